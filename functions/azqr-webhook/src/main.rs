#[tokio::main]
async fn main() -> Result<(), shared::runtime::Error> {
    shared::runtime::serve::<azqr_webhook::Azqr>().await
}

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve::<azqr_webhook::Azqr>().await
}

#[tokio::main]
async fn main() -> Result<(), shared::runtime::Error> {
    shared::runtime::serve::<pagstar_webhook::Pagstar>().await
}

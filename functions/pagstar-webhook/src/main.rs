#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve::<pagstar_webhook::Pagstar>().await
}

#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve::<pay3_webhook::Pay3>().await
}

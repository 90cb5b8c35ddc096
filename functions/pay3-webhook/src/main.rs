#[tokio::main]
async fn main() -> Result<(), shared::runtime::Error> {
    shared::runtime::serve::<pay3_webhook::Pay3>().await
}

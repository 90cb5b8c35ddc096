#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve::<key2pay_webhook::Key2Pay>().await
}

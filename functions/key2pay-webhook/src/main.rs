#[tokio::main]
async fn main() -> Result<(), shared::runtime::Error> {
    shared::runtime::serve::<key2pay_webhook::Key2Pay>().await
}

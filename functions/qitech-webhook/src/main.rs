#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve::<qitech_webhook::QiTech>().await
}

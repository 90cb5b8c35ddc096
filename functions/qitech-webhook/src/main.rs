#[tokio::main]
async fn main() -> Result<(), shared::runtime::Error> {
    shared::runtime::serve::<qitech_webhook::QiTech>().await
}

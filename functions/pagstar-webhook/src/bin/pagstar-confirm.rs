//! The Pagstar hint queue's consumer: asks Pagstar about each txid a webhook named, and
//! records what it answers.
#[tokio::main]
async fn main() -> Result<(), shared::runtime::Error> {
    shared::runtime::serve_hints::<pagstar_webhook::Pagstar>().await
}

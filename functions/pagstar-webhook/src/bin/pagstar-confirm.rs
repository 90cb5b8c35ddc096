//! The Pagstar hint queue's consumer: asks Pagstar about each txid a webhook named, and
//! records what it answers.
#[tokio::main]
async fn main() -> Result<(), shared::lambda::Error> {
    shared::lambda::serve_hints::<pagstar_webhook::Pagstar>().await
}

//! Money after the outcome, through the real pipeline (DynamoDB Local, the SQS server,
//! the providers' stand-ins on loopback): refunds with their own statuses, under-payments
//! and the words a provider says after a final status, each told to the merchant once per
//! change, under the same id when a word is repeated.

use crate::providers::{at, send, simulation};
use crate::support::{unique_number, Harness};
use provider_testkit::Simulator;
use shared::model::{
    event_id, mismatch_event_id, refund_event_id, EventType, MerchantEvent, MismatchKind, NotificationOutcome,
    RefundStatus, Status, SyncPolicy, TransactionRecord,
};
use shared::pipeline::{Provider, Webhook, WritePath};

async fn webhook<S: Simulator>(h: &Harness) -> (S, Webhook<S::Provider>) {
    let (simulator, env) = simulation::<S>().await;
    let provider = S::Provider::from_env(&env).unwrap_or_else(|e| panic!("{}: {e}", S::Provider::NAME));
    let write_path = WritePath::new(h.store.clone(), h.queue.clone(), SyncPolicy::default());
    (simulator, Webhook::with_write_path(provider, write_path))
}

async fn record(h: &Harness, provider: &str, reference: &str) -> TransactionRecord {
    h.store.get(provider, reference).await.expect("get").expect("record")
}

/// The merchant has the outcome (the notifier's mark): it is not sent again.
async fn delivered(h: &Harness, provider: &str, reference: &str, status: Status) {
    let marked = h.store.mark_notification(provider, reference, status, NotificationOutcome::Delivered, at(0)).await;
    assert!(marked.expect("mark"), "{provider} {reference}: pending");
}

fn ids(events: &[MerchantEvent]) -> Vec<&str> {
    events.iter().map(|e| e.id.as_str()).collect()
}

fn refunds(record: &TransactionRecord) -> Vec<(&str, RefundStatus)> {
    record.refunds.iter().map(|r| (r.id.as_str(), r.status)).collect()
}

/// Pay3 returns money that came in for a failed order: `REFUND_INITIATED` then
/// `REFUNDED`, each one event; repeated, the same id again; heard after the refund
/// settled (`REFUND_INITIATED` again, `REFUND_FAILED`), nothing changes and nothing is
/// sent. A conflict before it changes none of that, and the status stays `failed`.
#[tokio::test]
async fn a_pay3_refund_after_the_final_status_and_a_conflict() {
    use pay3_webhook::simulator::Pay3Simulator;
    let h = Harness::new().await;
    let (pay3, webhook) = webhook::<Pay3Simulator>(&h).await;
    let order = Pay3Simulator::new_reference(unique_number());
    let reference = Pay3Simulator::stored_reference(&order);
    let refund = pay3_webhook::refund_id(&order);
    let word = |word: &str, t: i64| pay3.webhook(&order, word, at(t));

    assert_eq!(send(&webhook, word("FAILED", 0), 0).await, 200);
    assert_eq!(ids(&h.drain_events().await), [event_id("pay3", &reference, Status::Failed)]);
    delivered(&h, "pay3", &reference, Status::Failed).await;
    assert_eq!(send(&webhook, word("COMPLETED", 1), 1).await, 200, "a conflict");
    assert_eq!(h.drain_events().await.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventType::Conflict]);

    let pending = refund_event_id("pay3", &reference, &refund, RefundStatus::Pending);
    let succeeded = refund_event_id("pay3", &reference, &refund, RefundStatus::Succeeded);
    assert_eq!(send(&webhook, word("REFUND_INITIATED", 2), 2).await, 200);
    let events = h.drain_events().await;
    assert_eq!(ids(&events), [pending.as_str()]);
    assert_eq!((events[0].kind, events[0].created_at), (EventType::RefundUpdated, at(2)));
    assert_eq!(refunds(&events[0].data), [(refund.as_str(), RefundStatus::Pending)], "data is the record");

    assert_eq!(send(&webhook, word("REFUNDED", 3), 3).await, 200);
    assert_eq!(ids(&h.drain_events().await), [succeeded.as_str()]);
    assert_eq!(send(&webhook, word("REFUNDED", 4), 4).await, 200, "repeated");
    assert_eq!(ids(&h.drain_events().await), [succeeded.as_str()], "the same event again");
    let hour_later = 3 + 3_600;
    assert_eq!(send(&webhook, word("REFUNDED", hour_later), hour_later).await, 200, "repeated an hour on");
    assert_eq!(ids(&h.drain_events().await), Vec::<&str>::new(), "told long ago: not sent again");
    for (late, t) in [("REFUND_INITIATED", 5), ("REFUND_FAILED", 6)] {
        assert_eq!(send(&webhook, word(late, t), t).await, 200);
        assert_eq!(ids(&h.drain_events().await), Vec::<&str>::new(), "{late} after the refund settled");
    }

    let stored = record(&h, "pay3", &reference).await;
    assert_eq!(stored.status, Status::Failed, "never reopened");
    assert_eq!(refunds(&stored), [(refund.as_str(), RefundStatus::Succeeded)]);
    assert_eq!((stored.sync, stored.next_sync_at), (None, None), "asked while pending, no more once settled");
    let shown = &stored.refunds[0];
    assert_eq!((shown.provider_status.as_str(), shown.updated_at), ("REFUNDED", at(3)), "when first heard");
    assert_eq!(stored.conflicts.len(), 1);
    let words: Vec<&str> = stored.after_final.iter().map(|w| w.provider_status.as_str()).collect();
    assert_eq!(words, ["REFUND_INITIATED", "REFUNDED", "REFUND_FAILED"], "each word once, in order");
    assert_eq!(stored.history.len(), 1, "the history is of statuses only");
}

/// `UNDER_PAID` after `COMPLETED`: the record says `underpaid` with no amounts given, the
/// merchant gets `transaction.amount_mismatch` (again, same id, when repeated); a review
/// after it is kept and sends nothing.
#[tokio::test]
async fn a_pay3_under_payment_and_review_after_completion() {
    use pay3_webhook::simulator::Pay3Simulator;
    let h = Harness::new().await;
    let (pay3, webhook) = webhook::<Pay3Simulator>(&h).await;
    let order = Pay3Simulator::new_reference(unique_number());
    let reference = Pay3Simulator::stored_reference(&order);
    let word = |word: &str, t: i64| pay3.webhook(&order, word, at(t));

    assert_eq!(send(&webhook, word("COMPLETED", 0), 0).await, 200);
    assert_eq!(ids(&h.drain_events().await), [event_id("pay3", &reference, Status::Completed)]);
    delivered(&h, "pay3", &reference, Status::Completed).await;
    assert_eq!(send(&webhook, word("UNDER_PAID", 5), 5).await, 200);
    let events = h.drain_events().await;
    let mismatch = mismatch_event_id("pay3", &reference, MismatchKind::Underpaid);
    assert_eq!(ids(&events), [mismatch.as_str()]);
    assert_eq!((events[0].kind, events[0].created_at), (EventType::AmountMismatch, at(5)), "when it was said");
    let shown = events[0].data.amount_mismatch.as_ref().expect("in the event's data");
    assert_eq!(
        (shown.kind, shown.expected.as_deref(), shown.reported.as_deref()),
        (MismatchKind::Underpaid, None, None)
    );

    assert_eq!(send(&webhook, word("REVIEW_CREATED", 6), 6).await, 200);
    assert_eq!(ids(&h.drain_events().await), Vec::<&str>::new(), "a review changes nothing else");
    assert_eq!(send(&webhook, word("UNDER_PAID", 7), 7).await, 200);
    assert_eq!(ids(&h.drain_events().await), [mismatch.as_str()], "repeated: the same event");

    let stored = record(&h, "pay3", &reference).await;
    assert_eq!(stored.status, Status::Completed);
    assert_eq!(stored.amount_mismatch.map(|m| m.kind), Some(MismatchKind::Underpaid));
    let words: Vec<(&str, time::OffsetDateTime)> =
        stored.after_final.iter().map(|w| (w.provider_status.as_str(), w.received_at)).collect();
    assert_eq!(words, [("UNDER_PAID", at(5)), ("REVIEW_CREATED", at(6))]);
}

/// A refund heard before the status it follows: a record is made at `created` to keep it
/// (the sync asks Pay3 about it), and the final status applies over it, the refund kept.
#[tokio::test]
async fn a_refund_heard_before_the_final_status_is_kept() {
    use pay3_webhook::simulator::Pay3Simulator;
    let h = Harness::new().await;
    let (pay3, webhook) = webhook::<Pay3Simulator>(&h).await;
    let order = Pay3Simulator::new_reference(unique_number());
    let reference = Pay3Simulator::stored_reference(&order);
    let refund = pay3_webhook::refund_id(&order);

    assert_eq!(send(&webhook, pay3.webhook(&order, "REFUNDED", at(0)), 0).await, 200);
    let first = record(&h, "pay3", &reference).await;
    assert_eq!((first.status, first.sync.is_some()), (Status::Created, true), "kept, and asked about");
    assert_eq!(refunds(&first), [(refund.as_str(), RefundStatus::Succeeded)]);
    assert_eq!(ids(&h.drain_events().await), [refund_event_id("pay3", &reference, &refund, RefundStatus::Succeeded)]);
    assert_eq!(send(&webhook, pay3.webhook(&order, "FAILED", at(1)), 1).await, 200);
    let stored = record(&h, "pay3", &reference).await;
    assert_eq!(stored.status, Status::Failed);
    assert_eq!(refunds(&stored), [(refund.as_str(), RefundStatus::Succeeded)], "the refund stays");
    assert_eq!(ids(&h.drain_events().await), [event_id("pay3", &reference, Status::Failed)]);
}

/// Pagstar's returns (`pix[].devolucoes`, MED's included) are refunds: each status change
/// is one event, with the return's amount; a hint that finds nothing new sends the same
/// ids again.
#[tokio::test]
async fn pagstar_returns_are_refunds() {
    use pagstar_webhook::simulator::{hint, PagstarSimulator};
    let h = Harness::new().await;
    let (pagstar, webhook) = webhook::<PagstarSimulator>(&h).await;
    let txid = PagstarSimulator::new_reference(unique_number());
    pagstar.settle(&txid, "CONCLUIDA");
    assert_eq!(send(&webhook, hint(&txid), 0).await, 200);
    assert_eq!(ids(&h.drain_events().await), [event_id("pagstar", &txid, Status::Completed)]);
    delivered(&h, "pagstar", &txid, Status::Completed).await;

    assert!(pagstar.stand_in().set_return(&txid, "D1", "30.00", "EM_PROCESSAMENTO"));
    assert_eq!(send(&webhook, hint(&txid), 1).await, 200);
    let d1_pending = refund_event_id("pagstar", &txid, "D1", RefundStatus::Pending);
    assert_eq!(ids(&h.drain_events().await), [d1_pending.as_str()]);

    assert!(pagstar.stand_in().set_return(&txid, "D1", "30.00", "DEVOLVIDO"));
    assert!(pagstar.stand_in().set_return(&txid, "MED1", "70.00", "NAO_REALIZADO"));
    assert_eq!(send(&webhook, hint(&txid), 2).await, 200);
    let settled = [
        refund_event_id("pagstar", &txid, "D1", RefundStatus::Succeeded),
        refund_event_id("pagstar", &txid, "MED1", RefundStatus::Failed),
    ];
    assert_eq!(ids(&h.drain_events().await), settled);
    assert_eq!(send(&webhook, hint(&txid), 3).await, 200);
    assert_eq!(ids(&h.drain_events().await), settled, "nothing new: the same events again");

    let stored = record(&h, "pagstar", &txid).await;
    assert_eq!(stored.status, Status::Completed);
    assert_eq!(refunds(&stored), [("D1", RefundStatus::Succeeded), ("MED1", RefundStatus::Failed)]);
    let d1 = &stored.refunds[0];
    assert_eq!(
        (d1.amount.as_ref().map(|a| a.as_str()), d1.currency.as_deref(), d1.provider_status.as_str(), d1.updated_at),
        (Some("30.00"), Some("BRL"), "DEVOLVIDO", at(2))
    );
    assert!(stored.after_final.is_empty(), "a return is no after-final word");
}

/// A pending return keeps the charge on the sync schedule, final as it is; the sync asks
/// Pagstar, finds it `DEVOLVIDO`, tells the merchant, and asks no more.
#[tokio::test]
async fn a_pending_pagstar_refund_is_settled_by_the_sync() {
    use pagstar_webhook::simulator::{hint, PagstarSimulator};
    let h = Harness::new().await;
    let (pagstar, env) = simulation::<PagstarSimulator>().await;
    let provider = pagstar_webhook::Pagstar::from_env(&env).expect("pagstar");
    let write_path = || WritePath::new(h.store.clone(), h.queue.clone(), SyncPolicy::default());
    let webhook = Webhook::with_write_path(provider, write_path());
    let sync = status_sync::StatusSync::new(write_path(), status_sync::providers_from_env(&env).expect("sync"), 50);
    let txid = PagstarSimulator::new_reference(unique_number());
    pagstar.settle(&txid, "CONCLUIDA");
    assert!(pagstar.stand_in().set_return(&txid, "D1", "100.00", "EM_PROCESSAMENTO"));
    assert_eq!(send(&webhook, hint(&txid), 0).await, 200, "paid and returned at once: one word");
    let stored = record(&h, "pagstar", &txid).await;
    assert_eq!((stored.status, refunds(&stored)), (Status::Completed, vec![("D1", RefundStatus::Pending)]));
    assert_eq!(stored.sync, Some(shared::model::SyncState::Scheduled), "the record says the sync asks");
    assert_eq!(stored.next_sync_at, Some(at(300)));
    delivered(&h, "pagstar", &txid, Status::Completed).await;
    h.drain_events().await;

    // Still pending when asked: asked again later, along the ladder.
    sync.run(at(301)).await;
    let asked = record(&h, "pagstar", &txid).await;
    assert_eq!((refunds(&asked), asked.sync_attempts), (vec![("D1", RefundStatus::Pending)], 1));
    let next = asked.next_sync_at.expect("asked again");
    assert!(next > at(301), "{next}");
    let pending = refund_event_id("pagstar", &txid, "D1", RefundStatus::Pending);
    assert_eq!(ids(&h.drain_events().await), [pending.as_str()], "nothing new: within the hour, the same event");

    assert!(pagstar.stand_in().set_return(&txid, "D1", "100.00", "DEVOLVIDO"));
    let t = (next - at(0)).whole_seconds();
    sync.run(at(t)).await;
    let settled = record(&h, "pagstar", &txid).await;
    assert_eq!(refunds(&settled), [("D1", RefundStatus::Succeeded)]);
    assert_eq!((settled.sync, settled.next_sync_at), (None, None), "asked no more");
    assert_eq!(ids(&h.drain_events().await), [refund_event_id("pagstar", &txid, "D1", RefundStatus::Succeeded)]);
}

/// The sync settles a pending refund, and its event's send fails (the batch, on the wire):
/// no provider retries the sync, so the record is marked for the reconciler, whose next run
/// sends the refund's event (and the outcome again, under the same ids).
#[tokio::test]
async fn a_refund_event_the_sync_could_not_send_is_sent_by_the_reconciler() {
    use pagstar_webhook::simulator::{hint, PagstarSimulator};
    let h = Harness::new().await;
    let (pagstar, env) = simulation::<PagstarSimulator>().await;
    let provider = pagstar_webhook::Pagstar::from_env(&env).expect("pagstar");
    let webhook =
        Webhook::with_write_path(provider, WritePath::new(h.store.clone(), h.queue.clone(), SyncPolicy::default()));
    let failing = shared::storage::EventQueue::new(
        crate::reconciler_and_status::NthBatchFails::client(&h, 1),
        &h.resources.queue_url,
    );
    let write_path = WritePath::new(h.store.clone(), failing, SyncPolicy::default());
    let sync = status_sync::StatusSync::new(write_path, status_sync::providers_from_env(&env).expect("sync"), 50);
    let txid = PagstarSimulator::new_reference(unique_number());
    pagstar.settle(&txid, "CONCLUIDA");
    assert!(pagstar.stand_in().set_return(&txid, "D1", "100.00", "EM_PROCESSAMENTO"));
    assert_eq!(send(&webhook, hint(&txid), 0).await, 200);
    delivered(&h, "pagstar", &txid, Status::Completed).await;
    h.drain_events().await;

    assert!(pagstar.stand_in().set_return(&txid, "D1", "100.00", "DEVOLVIDO"));
    sync.run(at(301)).await;
    assert_eq!(ids(&h.drain_events().await), Vec::<&str>::new(), "the send failed");
    let marked = record(&h, "pagstar", &txid).await;
    assert_eq!(refunds(&marked), [("D1", RefundStatus::Succeeded)]);
    assert!(marked.is_notification_pending() && marked.requeue_failed, "marked for the reconciler");

    let reconciler = reconciler::Reconciler::new(h.store.clone(), h.queue.clone());
    assert_eq!(reconciler.run(at(302)).await.expect("run"), 1);
    let settled = refund_event_id("pagstar", &txid, "D1", RefundStatus::Succeeded);
    assert_eq!(
        ids(&h.drain_events().await),
        [event_id("pagstar", &txid, Status::Completed).as_str(), settled.as_str()],
        "the outcome again, then the refund"
    );
    assert!(!record(&h, "pagstar", &txid).await.requeue_failed, "sent: not again next run");
}

//! `payhooks trigger PROVIDER SCENARIO`: a provider's realistic sequence of webhooks, from
//! its simulator, signed as the provider signs (with the development credentials of
//! `local.env.example` and `dev-keys/`), sent to the local pipeline or a development stack
//! provisioned with those credentials.

use std::io::Write;
use std::path::Path;

use serde_json::Value;
use time::OffsetDateTime;

use super::{print, segment, Args, Stop, Target, REFUSED, USAGE};
use crate::chaos::traffic::{start_providers, ChaosProvider};

/// The scenarios, and what each sends.
pub(super) const SCENARIOS: &str = "paid        every status word of one payment, in order, up to its final one
  conflict    the payment's words, then a different final word (a conflict needing a human)
  duplicate   every word twice, as a provider retrying sends it
  after-final the payment's words, then what the provider says after the outcome (refunds,
              reviews), where it has such words";

/// The words `scenario` sends, in order.
fn words(provider: &ChaosProvider, scenario: &str) -> Result<Vec<&'static str>, Stop> {
    let simulation = &provider.simulation;
    let sequence = simulation.sequence().to_vec();
    match scenario {
        "paid" => Ok(sequence),
        "duplicate" => Ok(sequence.iter().flat_map(|w| [*w, *w]).collect()),
        "conflict" => {
            let (first, second) = simulation.conflict();
            let mut words: Vec<&str> = sequence.iter().copied().filter(|w| *w != first && *w != second).collect();
            words.retain(|w| !simulation.status_of(w).is_final());
            words.extend([first, second]);
            Ok(words)
        }
        "after-final" if !simulation.after_final().is_empty() => {
            Ok(sequence.into_iter().chain(simulation.after_final().iter().copied()).collect())
        }
        "after-final" => Err(Stop {
            code: USAGE,
            message: format!("{} says nothing after the outcome: no after-final scenario", provider.name),
        }),
        other => Err(Stop::usage(format!("no scenario {other}; the scenarios:\n  {SCENARIOS}"))),
    }
}

/// Sets `path` (dotted: `data.amount`) in `body` to `value` (JSON if it parses, else text).
fn set(body: &mut Value, path: &str, value: &str) -> Result<(), Stop> {
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    let mut place = body;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let object = place
            .as_object_mut()
            .ok_or_else(|| Stop::usage(format!("--set {path}: {part} is not inside a JSON object")))?;
        if parts.peek().is_none() {
            object.insert(part.to_owned(), value);
            return Ok(());
        }
        place = object.entry(part.to_owned()).or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
    Err(Stop::usage("--set needs field=value"))
}

/// The webhook saying `word`, with the `--set` edits applied and signed again.
fn request(
    provider: &ChaosProvider,
    reference: &str,
    word: &str,
    edits: &[(String, String)],
    now: OffsetDateTime,
) -> Result<shared::pipeline::Inbound, Stop> {
    let simulation = &provider.simulation;
    simulation.settle(reference, word);
    let genuine = simulation.deliver(reference, word, now);
    if edits.is_empty() {
        return Ok(genuine);
    }
    let signed_inside = simulation.signed_content(reference, word);
    let content = signed_inside.clone().unwrap_or_else(|| genuine.body.clone());
    let mut body: Value = serde_json::from_slice(&content)
        .map_err(|_| Stop::usage(format!("{}'s webhook is not JSON: --set cannot edit it", provider.name)))?;
    for (field, value) in edits {
        set(&mut body, field, value)?;
    }
    let edited = body.to_string().into_bytes();
    let mut request = if signed_inside.is_some() {
        simulation.sign_content(&edited, now)
    } else {
        simulation.with_body(&edited, now)
    };
    // The path's parameters (AZQR's rrn) stay those of the genuine webhook.
    request.path_parameters = genuine.path_parameters;
    Ok(request)
}

pub(super) async fn run(
    args: &Args,
    target: &Target,
    provider_name: &str,
    scenario: &str,
    out: &mut dyn Write,
) -> Result<(), Stop> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let env = crate::DevEnv::load(&root.join("local.env.example"))
        .map_err(|e| Stop { code: REFUSED, message: format!("local.env.example: {e}") })?;
    let providers = start_providers(&env, &root)
        .await
        .map_err(|e| Stop { code: REFUSED, message: format!("cannot start the simulations: {e}") })?;
    let known: Vec<&str> = providers.iter().map(|p| p.name).collect();
    let provider = providers
        .iter()
        .find(|p| p.name == provider_name)
        .ok_or_else(|| Stop::usage(format!("no provider {provider_name}; the providers: {}", known.join(", "))))?;
    if provider.hint {
        // The pipeline asks the provider's API for the truth, and the local pipeline's API
        // is its own stand-in, which this process cannot settle.
        return Err(Stop {
            code: USAGE,
            message: format!(
                "{}'s webhook is only a hint: the pipeline asks {}'s API for the payment's state, which trigger cannot set",
                provider.name, provider.name
            ),
        });
    }
    let words = words(provider, scenario)?;
    let edits: Vec<(String, String)> = args
        .sets
        .iter()
        .map(|edit| {
            edit.split_once('=')
                .map(|(f, v)| (f.to_owned(), v.to_owned()))
                .ok_or_else(|| Stop::usage(format!("--set {edit}: field=value")))
        })
        .collect::<Result<_, _>>()?;
    let unique = OffsetDateTime::now_utc().unix_timestamp_nanos().unsigned_abs() as u64 % 1_000_000_000_000;
    let reference = match args.options.get("reference") {
        Some(reference) => reference.clone(),
        None => provider.simulation.new_reference(unique),
    };
    let stored = provider.simulation.stored_reference(&reference);
    let mut failed = 0;
    for word in &words {
        let request = request(provider, &reference, word, &edits, OffsetDateTime::now_utc())?;
        let (status, answer) = target.send_raw(&provider.route.path_of(&request), &request).await?;
        let verdict = if (200..300).contains(&status) { "" } else { "  REFUSED" };
        if !verdict.is_empty() {
            failed += 1;
        }
        let answer: String = answer.chars().take(100).collect();
        print(out, format!("{} {word:<22} -> {status}{verdict} {}", provider.name, answer.trim()))?;
    }
    print(out, format!("transaction: payhooks tx get {} {}", provider.name, segment(&stored)))?;
    if failed > 0 {
        return Err(Stop {
            code: REFUSED,
            message: format!(
                "{failed} of {} webhooks were refused (a deployed stack must hold the development credentials of local.env.example)",
                words.len()
            ),
        });
    }
    Ok(())
}

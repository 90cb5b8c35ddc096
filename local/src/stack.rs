//! The local stack, brought up in one place for the run command, `scripts/invoke` and
//! `scripts/provision` (the tests share one table per test and take the steps apart): template.yaml's table, queues and secrets on the
//! emulators, and every provider's simulation.

use std::path::Path;

use shared::runtime::config::Env;

use crate::provision::Resources;
use crate::template::Template;
use crate::{dynamodb_client, secrets_client, sqs_client, DevEnv};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Creates `template`'s table and queues on the emulators `env` names
/// (`DYNAMODB_ENDPOINT`, `SQS_ENDPOINT`), and its secrets in moto's Secrets Manager (the
/// SQS endpoint) holding `env`'s development values, every name starting with `prefix`.
/// Each function then reads its secrets by ARN, as in AWS.
pub async fn provision(template: &Template, env: &DevEnv, prefix: &str) -> Result<Resources, Error> {
    let (dynamodb, sqs) = (env.required("DYNAMODB_ENDPOINT")?, env.required("SQS_ENDPOINT")?);
    let mut resources = template.provision(&dynamodb_client(&dynamodb), &sqs_client(&sqs), prefix).await?;
    template.provision_secrets(&secrets_client(&sqs), prefix, env, &mut resources).await?;
    Ok(resources)
}

/// [`provision`], then every provider's simulation (a stand-in of its API, where it has
/// one), `env` pointed at what was started unless it names a value already. Returns the
/// resources and the variables the simulations set.
pub async fn bring_up(
    template: &Template,
    env: &mut DevEnv,
    root: &Path,
    prefix: &str,
) -> Result<(Resources, provider_testkit::Variables), Error> {
    let resources = provision(template, env, prefix).await?;
    let simulated = crate::registry::start_simulations(env, root).await?;
    Ok((resources, simulated))
}

//! The catalogue compiled: each model resolved to its provider, or to the targets of its
//! Envoy pool cluster (`targets` + `cluster`), with the API families a request for it may use.
//! A pool serving Bedrock names models of one vendor only: a Bedrock `invoke` body is in the
//! model's own format (Claude's `messages`, Llama's `prompt`), and every attempt is sent the
//! same body.

use std::collections::HashMap;

use super::classify::ApiFamily;
use super::compiled::{Model, Pool, Provider, Target};
use super::config::{Errors, ModelConfig, PriceConfig, TargetConfig, MAX_TARGETS};
use super::price::Price;

/// A price as configured, in micro-dollars per million tokens: cached input and cache writes
/// at the input rate and reasoning at the output rate unless priced apart.
pub(super) fn compile_price(price: &PriceConfig) -> Price {
    Price {
        input: price.input.0,
        output: price.output.0,
        cached_input: price.cached_input.unwrap_or(price.input).0,
        reasoning: price.reasoning.unwrap_or(price.output).0,
        cache_write: price.cache_write.unwrap_or(price.input).0,
    }
}

/// The model at `path`, when it resolves; each mistake is added to `errors`.
pub(super) fn compile_model(
    errors: &mut Errors,
    (path, name): (&str, &str),
    model: &ModelConfig,
    providers: &[Provider],
    provider_index: &HashMap<&str, usize>,
) -> Option<Model> {
    if let Some(upstream) = &model.upstream_model {
        check_model_name(errors, format!("{path}.upstream_model"), upstream);
    }
    match (&model.provider, &model.targets, &model.cluster) {
        (Some(provider), None, None) => match provider_index.get(provider.as_str()) {
            Some(&provider) => Some(Model {
                provider,
                upstream_model: model.upstream_model.clone(),
                pool: None,
                price: model.price.as_ref().map(compile_price),
            }),
            None => {
                errors.add(
                    format!("{path}.provider"),
                    format!("unknown provider \"{provider}\"; define it under \"providers\""),
                );
                None
            }
        },
        (Some(_), _, _) => {
            errors.add(
                path,
                "a model has either \"provider\" or \"targets\" and \"cluster\", never both",
            );
            None
        }
        (None, Some(targets), Some(cluster)) => {
            if model.upstream_model.is_some() {
                errors.add(
                    format!("{path}.upstream_model"),
                    "a model with \"targets\" names its upstream model in each target",
                );
            }
            check_cluster_is_no_providers(errors, path, cluster, providers);
            let pool = (path, name, cluster.as_str());
            let mut compiled = compile_pool(errors, pool, targets, providers, provider_index)?;
            // A target's own price, else the model's, for the answers that target serves.
            let price = model.price.as_ref().map(compile_price);
            compiled.price = price;
            if let Some(pool) = compiled.pool.as_mut() {
                for (target, config) in pool.targets.iter_mut().zip(targets) {
                    target.price = config.price.as_ref().map(compile_price).or(price);
                }
            }
            Some(compiled)
        }
        (None, Some(_), None) => {
            errors.add(
                format!("{path}.cluster"),
                "a model with \"targets\" needs \"cluster\": the Envoy pool cluster holding \
                 every target's endpoints",
            );
            None
        }
        (None, None, Some(_)) => {
            errors.add(
                format!("{path}.targets"),
                "a model with \"cluster\" needs \"targets\": the providers its pool cluster \
                 holds",
            );
            None
        }
        (None, None, None) => {
            errors.add(
                path,
                "names no provider: give \"provider\", or \"targets\" and \"cluster\"",
            );
            None
        }
    }
}

/// Models that share a pool cluster name the same providers: the cluster's endpoints are the
/// targets of every model routed to it, so a retry of one model could otherwise land on
/// another model's target, which the upstream filter refuses after a provider already
/// answered.
pub(super) fn check_shared_pools(
    errors: &mut Errors,
    models: &HashMap<String, Model>,
    providers: &[Provider],
) {
    let mut names: Vec<&String> = models.keys().collect();
    names.sort();
    let mut first_by_cluster: Vec<(&str, &str, Vec<usize>)> = Vec::new();
    for name in names {
        let Some(pool) = models.get(name).and_then(|model| model.pool.as_ref()) else {
            continue;
        };
        let mut targets: Vec<usize> = pool.targets.iter().map(|target| target.provider).collect();
        targets.sort_unstable();
        match first_by_cluster
            .iter()
            .find(|(cluster, _, _)| *cluster == pool.cluster)
        {
            None => first_by_cluster.push((&pool.cluster, name, targets)),
            Some((cluster, first, first_targets)) if *first_targets != targets => {
                let listed: Vec<&str> = first_targets
                    .iter()
                    .filter_map(|index| providers.get(*index))
                    .map(|provider| provider.name.as_str())
                    .collect();
                errors.add(
                    format!("models.{name}.cluster"),
                    format!(
                        "\"{cluster}\" is also the pool of model \"{first}\", whose targets are \
                         {listed:?}; models that share a pool cluster name the same providers \
                         (the cluster's endpoints are the targets of every model routed to \
                         it): give this model its own pool cluster, or the same providers"
                    ),
                );
            }
            Some(_) => {}
        }
    }
}

/// A pool cluster is never also a provider's cluster: a pooled model routed to a provider's
/// cluster reaches that provider with no upstream filter (the plan never applied), and a
/// provider routed to a pool reaches the upstream filter without a plan. Both sides of the
/// crossing are named.
fn check_cluster_is_no_providers(
    errors: &mut Errors,
    path: &str,
    cluster: &str,
    providers: &[Provider],
) {
    for provider in providers
        .iter()
        .filter(|provider| provider.cluster == cluster)
    {
        errors.add(
            format!("{path}.cluster"),
            format!(
                "\"{cluster}\" is the cluster of provider \"{}\": a pool cluster is never also \
                 a provider's cluster; give the model its own pool cluster, with Posturio's \
                 upstream filter",
                provider.name
            ),
        );
        errors.add(
            format!("providers.{}.cluster", provider.name),
            format!(
                "\"{cluster}\" is the pool cluster of model \"{}\": a pool cluster is never \
                 also a provider's cluster; give the provider its own cluster",
                path.strip_prefix("models.").unwrap_or(path)
            ),
        );
    }
}

fn compile_pool(
    errors: &mut Errors,
    (path, name, cluster): (&str, &str, &str),
    targets: &[TargetConfig],
    providers: &[Provider],
    provider_index: &HashMap<&str, usize>,
) -> Option<Model> {
    let found = errors.count();
    if !is_cluster_name(cluster) {
        errors.add(
            format!("{path}.cluster"),
            "must be an Envoy cluster name: 1 to 256 visible ASCII characters, no spaces",
        );
    }
    if targets.is_empty() {
        errors.add(
            format!("{path}.targets"),
            "must list at least one target; a model served by one provider can name it with \
             \"provider\" instead",
        );
    }
    if targets.len() > MAX_TARGETS {
        errors.add(
            format!("{path}.targets"),
            format!(
                "lists {} targets; at most {MAX_TARGETS} are allowed",
                targets.len()
            ),
        );
    }
    let mut compiled: Vec<Target> = Vec::with_capacity(targets.len());
    for (index, target) in targets.iter().enumerate() {
        let at = format!("{path}.targets[{index}]");
        if let Some(upstream) = &target.upstream_model {
            check_model_name(errors, format!("{at}.upstream_model"), upstream);
        }
        let Some(&provider) = provider_index.get(target.provider.as_str()) else {
            errors.add(
                format!("{at}.provider"),
                format!(
                    "unknown provider \"{}\"; define it under \"providers\"",
                    target.provider
                ),
            );
            continue;
        };
        if compiled.iter().any(|earlier| earlier.provider == provider) {
            errors.add(
                format!("{at}.provider"),
                format!(
                    "provider \"{}\" is listed twice; each target of a model is a different \
                     provider: the endpoint's metadata names the provider",
                    target.provider
                ),
            );
            continue;
        }
        compiled.push(Target {
            provider,
            upstream_model: target.upstream_model.clone(),
            price: None,
        });
    }
    // A request can only fail over to a provider that speaks its API: the model accepts the
    // families every target accepts.
    let mut families: Option<Vec<ApiFamily>> = None;
    for target in &compiled {
        let accepted = providers
            .get(target.provider)
            .map_or(&[][..], |provider| provider.families.as_slice());
        families = Some(match families {
            None => accepted.to_vec(),
            Some(so_far) => so_far
                .into_iter()
                .filter(|family| accepted.contains(family))
                .collect(),
        });
    }
    let families = families.unwrap_or_default();
    if !compiled.is_empty() && compiled.len() == targets.len() && families.is_empty() {
        let named: Vec<String> = compiled
            .iter()
            .filter_map(|target| providers.get(target.provider))
            .map(|provider| format!("\"{}\"", provider.name))
            .collect();
        errors.add(
            format!("{path}.targets"),
            format!(
                "providers {} share no API family; a request can only fail over to a provider \
                 that speaks its API",
                named.join(", ")
            ),
        );
    }
    if families.contains(&ApiFamily::Bedrock) {
        check_bedrock_vendors(errors, path, name, targets);
    }
    if errors.count() != found {
        return None;
    }
    let first = compiled.first()?;
    Some(Model {
        provider: first.provider,
        upstream_model: first.upstream_model.clone(),
        price: None,
        pool: Some(Pool {
            cluster: cluster.to_owned(),
            targets: compiled,
            families,
        }),
    })
}

/// A pool that serves Bedrock: every target's model is of one vendor, which its model id
/// names. Only checked once every target resolved (the pool's families are known).
fn check_bedrock_vendors(errors: &mut Errors, path: &str, name: &str, targets: &[TargetConfig]) {
    if targets.len() < 2 {
        return;
    }
    let mut first: Option<(usize, &str)> = None;
    for (index, target) in targets.iter().enumerate() {
        let model = target.upstream_model.as_deref().unwrap_or(name);
        let at = format!("{path}.targets[{index}].upstream_model");
        let Some(vendor) = bedrock_vendor(model) else {
            errors.add(
                at,
                format!(
                    "the Bedrock model \"{model}\" names no vendor (such as \"anthropic\" in \
                     \"anthropic.claude-v2:1\"); a pool's targets must be seen to share one \
                     vendor, as a Bedrock invoke body is in the vendor's own format: name the \
                     model id or a cross-region inference profile id, not an opaque ARN"
                ),
            );
            continue;
        };
        match first {
            None => first = Some((index, vendor)),
            Some((earlier, expected)) if expected != vendor => errors.add(
                at,
                format!(
                    "a Bedrock model of vendor \"{vendor}\" after targets[{earlier}]'s vendor \
                     \"{expected}\"; a Bedrock invoke body is in the vendor's own format and \
                     every attempt is sent the same body: pool only models of one vendor"
                ),
            ),
            Some(_) => {}
        }
    }
}

/// The cross-region inference profile prefixes Bedrock puts before a model id.
const REGION_PREFIXES: [&str; 7] = ["us", "us-gov", "eu", "apac", "global", "jp", "au"];

/// The vendor of a Bedrock model id (`anthropic` in `anthropic.claude-v2:1` and
/// `us.anthropic.claude-3-5-sonnet-20240620-v1:0`). An ARN is read by its last segment
/// (`.../foundation-model/anthropic.claude-v2` or `.../inference-profile/eu.meta.llama3...`);
/// an ARN whose last segment is an opaque id (provisioned throughput, a custom or imported
/// model, an application inference profile) names no vendor.
pub(super) fn bedrock_vendor(model: &str) -> Option<&str> {
    let id = match model.strip_prefix("arn:") {
        Some(arn) => arn.rsplit('/').next()?,
        None => model,
    };
    let mut segments = id.split('.');
    let first = segments.next()?;
    let second = segments.next()?;
    let (vendor, has_rest) = if REGION_PREFIXES.contains(&first) {
        (second, segments.next().is_some())
    } else {
        (first, true)
    };
    let is_name = |text: &str| {
        !text.is_empty()
            && text
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
    };
    (has_rest && is_name(vendor)).then_some(vendor)
}

/// Whether `name` can be an Envoy cluster name.
pub(super) fn is_cluster_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 256 && name.bytes().all(|b| b.is_ascii_graphic())
}

fn check_model_name(errors: &mut Errors, path: String, name: &str) {
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        errors.add(
            path,
            "a model name must be 1 to 256 bytes without control characters",
        );
    }
}

#[cfg(test)]
#[path = "compile_models_tests.rs"]
mod tests;

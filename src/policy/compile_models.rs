//! The catalogue compiled: each model resolved to its provider, or to the targets of its
//! Envoy pool cluster (`targets` + `cluster`), with the API families a request for it may use.

use std::collections::HashMap;

use super::classify::ApiFamily;
use super::compiled::{Model, Pool, Provider, Target};
use super::config::{Errors, ModelConfig, TargetConfig, MAX_TARGETS};

/// The model at `path`, when it resolves; each mistake is added to `errors`.
pub(super) fn compile_model(
    errors: &mut Errors,
    path: &str,
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
            compile_pool(errors, path, targets, cluster, providers, provider_index)
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
    path: &str,
    targets: &[TargetConfig],
    cluster: &str,
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
    if errors.count() != found {
        return None;
    }
    let first = compiled.first()?;
    Some(Model {
        provider: first.provider,
        upstream_model: first.upstream_model.clone(),
        pool: Some(Pool {
            cluster: cluster.to_owned(),
            targets: compiled,
            families,
        }),
    })
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

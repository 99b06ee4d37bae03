//! The last step: the operator's part of the CanalInstance status (the pods write the rest: active pod, members,
//! position). Three Conditions with bounded reasons:
//!
//! | type | status | reasons |
//! |---|---|---|
//! | `Ready` | True when a pod is active and ready | `Serving`; `WaitingForPods`, `InvalidSpec`, `SecretMissing` |
//! | `Progressing` | True while the StatefulSet rolls out the current spec | `RolloutInProgress`; `RolloutComplete`, `InvalidSpec`, `SecretMissing` |
//! | `Degraded` | True when the instance is not what the spec asks, once no rollout explains it | `NoActivePod`, `PodBehind`, `InvalidSpec`, `SecretMissing`; `AsExpected` |
//!
//! A Condition's `lastTransitionTime` moves only when its status does, and [`unchanged`] lets the controller skip
//! the write when nothing moved, so the pods' periodic reports cannot turn into a stream of operator writes.

use canal_api::{CanalInstance, CanalInstanceStatus};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Resource;
use serde_json::json;

use crate::validate::Invalid;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// The operator-owned status fields, as the operator wants them.
#[derive(Clone, Debug, PartialEq)]
pub struct OperatorStatus {
    pub observed_generation: Option<i64>,
    pub conditions: Vec<Condition>,
    pub announced_failovers: i64,
    /// `ready/desired`, once the StatefulSet exists.
    pub ready_replicas: Option<String>,
}

/// One Condition as wanted, before its transition time is decided.
struct Wanted {
    type_: &'static str,
    status: bool,
    reason: &'static str,
    message: String,
}

fn want(type_: &'static str, status: bool, reason: &'static str, message: impl Into<String>) -> Wanted {
    Wanted {
        type_,
        status,
        reason,
        message: message.into(),
    }
}

/// Whole seconds, as the API server stores them, so a time read back compares equal to the one written.
pub fn now() -> Time {
    Time(jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

/// Makes Conditions of `wanted`, keeping the `lastTransitionTime` of those whose status did not change.
fn conditions(ci: &CanalInstance, wanted: Vec<Wanted>, now: &Time) -> Vec<Condition> {
    let current = ci.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    wanted
        .into_iter()
        .map(|w| {
            let status = if w.status { "True" } else { "False" };
            let last_transition_time = current
                .iter()
                .find(|c| c.type_ == w.type_ && c.status == status)
                .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: w.type_.into(),
                status: status.into(),
                reason: w.reason.into(),
                message: w.message,
                observed_generation: ci.metadata.generation,
                last_transition_time,
            }
        })
        .collect()
}

fn announced_failovers(ci: &CanalInstance) -> i64 {
    // The controller publishes an Event for each new failover before it writes this.
    ci.status.as_ref().map_or(0, |s| s.failovers.max(s.announced_failovers))
}

/// The status of a CanalInstance that cannot be deployed.
pub fn invalid(ci: &CanalInstance, invalid: &Invalid, now: &Time) -> OperatorStatus {
    let reason = invalid.reason();
    let message = invalid.to_string();
    OperatorStatus {
        observed_generation: ci.metadata.generation,
        conditions: conditions(
            ci,
            vec![
                want(READY, false, reason, message.clone()),
                want(PROGRESSING, false, reason, "nothing is rolled out until this is fixed"),
                want(DEGRADED, true, reason, message),
            ],
            now,
        ),
        announced_failovers: announced_failovers(ci),
        ready_replicas: None,
    }
}

/// The status of a deployed CanalInstance, from its StatefulSet as the API server returned it.
pub fn deployed(ci: &CanalInstance, sts: Option<&StatefulSet>, now: &Time) -> OperatorStatus {
    let desired = ci.spec.replicas;
    let status = sts.and_then(|s| s.status.clone()).unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let generation = sts.and_then(|s| s.metadata.generation);
    // Rolled out: the controller saw this spec, every pod runs its revision, and none is left over.
    let rolled_out = generation.is_some()
        && status.observed_generation == generation
        && status.update_revision.is_some()
        && status.update_revision == status.current_revision
        && updated >= desired
        && status.replicas == desired;
    let active = ci.status.as_ref().and_then(|s| s.active_pod.as_deref());
    let pods = format!("{ready} of {desired} pods ready");

    let ready_condition = match active {
        Some(_) if ready > 0 => want(READY, true, "Serving", pods.clone()),
        _ => want(READY, false, "WaitingForPods", pods.clone()),
    };
    let progressing = if rolled_out {
        want(
            PROGRESSING,
            false,
            "RolloutComplete",
            format!("{desired} pods run the current spec"),
        )
    } else {
        want(
            PROGRESSING,
            true,
            "RolloutInProgress",
            format!("{updated} of {desired} pods updated, {ready} ready"),
        )
    };
    let degraded = match active {
        _ if !rolled_out => want(DEGRADED, false, "AsExpected", "a rollout is in progress"),
        None => want(DEGRADED, true, "NoActivePod", format!("no pod is active; {pods}")),
        Some(_) if ready < desired => want(DEGRADED, true, "PodBehind", pods),
        Some(active) => want(DEGRADED, false, "AsExpected", format!("{active} is active; {pods}")),
    };
    OperatorStatus {
        observed_generation: ci.metadata.generation,
        conditions: conditions(ci, vec![ready_condition, progressing, degraded], now),
        announced_failovers: announced_failovers(ci),
        ready_replicas: Some(format!("{ready}/{desired}")),
    }
}

/// Whether the status already holds `desired`, so that writing it would change nothing.
pub fn unchanged(current: Option<&CanalInstanceStatus>, desired: &OperatorStatus) -> bool {
    current.is_some_and(|s| {
        s.observed_generation == desired.observed_generation
            && s.conditions == desired.conditions
            && s.announced_failovers == desired.announced_failovers
            && s.ready_replicas == desired.ready_replicas
    })
}

/// The server-side apply body of `desired`: only the fields the operator owns.
pub fn apply_body(desired: &OperatorStatus) -> serde_json::Value {
    let mut status = json!({
        "observedGeneration": desired.observed_generation,
        "conditions": desired.conditions,
        "announcedFailovers": desired.announced_failovers,
    });
    if let Some(ready) = &desired.ready_replicas {
        status["readyReplicas"] = json!(ready);
    }
    json!({
        "apiVersion": CanalInstance::api_version(&()),
        "kind": CanalInstance::kind(&()),
        "status": status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tests::{ORDERS, canal_instance};

    fn at(second: i64) -> Time {
        Time(jiff::Timestamp::from_second(second).unwrap())
    }

    /// A StatefulSet status, as YAML, on a StatefulSet of generation 1.
    fn sts(status: &str) -> StatefulSet {
        let mut sts: StatefulSet = serde_yaml::from_str(&format!(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: orders\n  generation: 1\n\
             spec:\n  selector: {{}}\n  template: {{}}\nstatus:\n{status}"
        ))
        .unwrap();
        sts.metadata.generation = Some(1);
        sts
    }

    const ROLLED_OUT: &str = "  observedGeneration: 1\n  replicas: 3\n  readyReplicas: 3\n  updatedReplicas: 3\n  \
                              currentRevision: orders-1\n  updateRevision: orders-1\n";

    fn with_status(mut ci: CanalInstance, desired: &OperatorStatus, active: Option<&str>) -> CanalInstance {
        ci.status = Some(CanalInstanceStatus {
            observed_generation: desired.observed_generation,
            conditions: desired.conditions.clone(),
            announced_failovers: desired.announced_failovers,
            ready_replicas: desired.ready_replicas.clone(),
            active_pod: active.map(Into::into),
            ..Default::default()
        });
        ci
    }

    fn find<'a>(status: &'a OperatorStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn a_transition_time_moves_only_when_the_status_does() {
        let ci = canal_instance(ORDERS);
        let first = deployed(&ci, None, &at(100));
        assert!(first.conditions.iter().all(|c| c.last_transition_time == at(100)));

        // Recomputed later with nothing new: identical, so there is nothing to write.
        let ci = with_status(ci, &first, None);
        assert_eq!(deployed(&ci, None, &at(200)), first);
        assert!(unchanged(ci.status.as_ref(), &deployed(&ci, None, &at(200))));

        // Another message but the same statuses: the times stay.
        let one_ready = sts("  replicas: 3\n  readyReplicas: 1\n");
        let again = deployed(&ci, Some(&one_ready), &at(300));
        assert_ne!(find(&again, READY).message, find(&first, READY).message);
        assert!(again.conditions.iter().all(|c| c.last_transition_time == at(100)));
        assert!(!unchanged(ci.status.as_ref(), &again), "the message changed");

        // Ready flips: only Ready's time moves.
        let ci = with_status(ci, &again, Some("orders-0"));
        let serving = deployed(&ci, Some(&one_ready), &at(400));
        assert_eq!(find(&serving, READY).status, "True");
        assert_eq!(find(&serving, READY).last_transition_time, at(400));
        assert_eq!(find(&serving, PROGRESSING).last_transition_time, at(100));
        assert_eq!(find(&serving, DEGRADED).last_transition_time, at(100));
    }

    #[test]
    fn progressing_while_rolling_out_then_degraded_reasons() {
        let ci = canal_instance(ORDERS);
        let rolling = deployed(
            &ci,
            Some(&sts(
                "  observedGeneration: 1\n  replicas: 3\n  updatedReplicas: 1\n  currentRevision: a\n  updateRevision: b\n",
            )),
            &at(1),
        );
        assert_eq!(
            (
                find(&rolling, PROGRESSING).status.as_str(),
                find(&rolling, PROGRESSING).reason.as_str()
            ),
            ("True", "RolloutInProgress")
        );
        assert_eq!(find(&rolling, DEGRADED).status, "False");

        let no_active = deployed(&ci, Some(&sts(ROLLED_OUT)), &at(1));
        assert_eq!(find(&no_active, PROGRESSING).reason, "RolloutComplete");
        assert_eq!(
            (
                find(&no_active, DEGRADED).status.as_str(),
                find(&no_active, DEGRADED).reason.as_str()
            ),
            ("True", "NoActivePod")
        );

        let ci = with_status(ci, &no_active, Some("orders-0"));
        let behind = deployed(
            &ci,
            Some(&sts(&ROLLED_OUT.replace("readyReplicas: 3", "readyReplicas: 2"))),
            &at(1),
        );
        assert_eq!(find(&behind, DEGRADED).reason, "PodBehind");
        assert_eq!(behind.ready_replicas.as_deref(), Some("2/3"));
        let healthy = deployed(&ci, Some(&sts(ROLLED_OUT)), &at(1));
        assert_eq!(
            healthy
                .conditions
                .iter()
                .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
                .collect::<Vec<_>>(),
            [
                ("Ready", "True", "Serving"),
                ("Progressing", "False", "RolloutComplete"),
                ("Degraded", "False", "AsExpected")
            ]
        );
    }

    #[test]
    fn invalid_and_missing_secret_are_degraded_with_their_reason() {
        let ci = canal_instance(ORDERS);
        let missing = Invalid::SecretMissing {
            name: "mysql-canal".into(),
            namespace: "shop".into(),
        };
        let status = invalid(&ci, &missing, &at(1));
        let reasons: Vec<(&str, &str, &str)> = status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("Ready", "False", "SecretMissing"),
                ("Progressing", "False", "SecretMissing"),
                ("Degraded", "True", "SecretMissing")
            ]
        );
        assert_eq!(status.ready_replicas, None);
        let body = apply_body(&status);
        assert_eq!(body["kind"], "CanalInstance");
        assert!(body["status"].get("readyReplicas").is_none());
    }
}

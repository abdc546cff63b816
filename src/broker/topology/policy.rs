//! Policies and runtime parameters changed through the vhost, under its topology lock,
//! so that a change is ordered with declarations: a queue declared meanwhile gets the
//! old policies and then the change, or the new ones. A change applies to the existing
//! queues at once (`Queue::apply_policy`) and is announced to topology subscribers as a
//! `PolicyDefined` event, then a `PolicyChanged` event for each queue and exchange whose
//! policies it changed; a runtime
//! parameter set or cleared is a `ParameterChanged` event.

use std::sync::Arc;

use super::{PolicyObject, TopologyEventKind};
use crate::broker::events::TopologyState;
use crate::broker::policy::{
    EffectivePolicy, ObjectKind, Parameter, Policy, PolicyError, PolicyKind, VHostPolicies,
};
use crate::broker::queue::Queue;
use crate::broker::vhost::VHost;
use crate::protocol::ShortString;

impl VHost {
    /// Adds or replaces a policy (checked by [`Policy::new`]) and applies it.
    pub fn set_policy(&self, policy: Policy) {
        let defined = policy_defined(policy.kind, &policy.name, true);
        let _ = self.change_policies(defined, |p| {
            p.set(policy);
            Ok(())
        });
    }

    /// Removes a policy and applies what is left; 404 if there is none of that name.
    pub fn clear_policy(&self, kind: PolicyKind, name: &str) -> Result<(), PolicyError> {
        self.change_policies(policy_defined(kind, name, false), |p| {
            p.clear(kind, name)
                .map(drop)
                .ok_or_else(|| PolicyError::NotFound(format!("no policy '{name}'")))
        })
    }

    pub fn policy(&self, kind: PolicyKind, name: &str) -> Option<Arc<Policy>> {
        self.policies_read().get(kind, name)
    }

    /// The policies of `kind`, by name.
    pub fn policies(&self, kind: PolicyKind) -> Vec<Arc<Policy>> {
        self.policies_read().list(kind)
    }

    /// Adds or replaces a runtime parameter (checked by [`Parameter::new`]); announced
    /// as a `ParameterChanged` event.
    pub fn set_parameter(&self, parameter: Parameter) {
        let mut state = self.lock_topology();
        state.record(TopologyEventKind::ParameterChanged {
            component: parameter.component.clone(),
            name: parameter.name.clone(),
            set: true,
        });
        self.policies_write().set_parameter(parameter);
        self.announce(&mut state);
    }

    /// Removes a runtime parameter; 404 if there is none.
    pub fn clear_parameter(&self, component: &str, name: &str) -> Result<(), PolicyError> {
        let mut state = self.lock_topology();
        self.policies_write()
            .clear_parameter(component, name)
            .ok_or_else(|| {
                PolicyError::NotFound(format!("no parameter '{name}' of component '{component}'"))
            })?;
        state.record(TopologyEventKind::ParameterChanged {
            component: component.to_owned(),
            name: name.to_owned(),
            set: false,
        });
        self.announce(&mut state);
        Ok(())
    }

    pub fn parameter(&self, component: &str, name: &str) -> Option<Parameter> {
        self.policies_read().parameter(component, name)
    }

    /// The runtime parameters of one component, or of all.
    pub fn parameters(&self, component: Option<&str>) -> Vec<Parameter> {
        self.policies_read().parameters(component)
    }

    /// The policies in force for the exchange `name` (for listing; federation reads
    /// `federation-upstream(-set)` from them).
    pub fn exchange_policy(&self, name: &ShortString) -> EffectivePolicy {
        self.policies_read()
            .effective(ObjectKind::Exchange, name.as_bytes())
    }

    /// Changes the store under the topology lock, then applies and announces what the
    /// change did to each queue and exchange. Nothing changes if `change` fails.
    fn change_policies(
        &self,
        defined: TopologyEventKind,
        change: impl FnOnce(&mut VHostPolicies) -> Result<(), PolicyError>,
    ) -> Result<(), PolicyError> {
        let mut state = self.lock_topology();
        let before = self.policies_read().clone();
        change(&mut self.policies_write())?;
        state.record(defined);
        let after = self.policies_read().clone();
        let exchanges: Vec<ShortString> = self.exchanges_read().keys().cloned().collect();
        for name in exchanges {
            let old = before.effective(ObjectKind::Exchange, name.as_bytes());
            let new = after.effective(ObjectKind::Exchange, name.as_bytes());
            if !old.same_as(&new) {
                state.record(policy_changed(PolicyObject::Exchange(name), &new));
            }
        }
        for q in self.queues() {
            self.apply_queue_policy(&mut state, &q, &after);
        }
        self.announce(&mut state);
        Ok(())
    }

    /// Puts the policies `policies` give `q` in force, if they differ from its own.
    pub(super) fn apply_queue_policy(
        &self,
        state: &mut TopologyState,
        q: &Arc<Queue>,
        policies: &VHostPolicies,
    ) {
        let new = policies.effective(ObjectKind::Queue, q.name().as_bytes());
        if new.same_as(&q.policy()) {
            return;
        }
        let settings = new.queue_settings(&q.spec.args, &q.spec.arguments);
        state.record(policy_changed(PolicyObject::Queue(q.name().clone()), &new));
        q.apply_policy(new, settings);
    }
}

fn policy_defined(kind: PolicyKind, name: &str, set: bool) -> TopologyEventKind {
    TopologyEventKind::PolicyDefined {
        operator: kind == PolicyKind::Operator,
        name: name.to_owned(),
        set,
    }
}

pub(super) fn policy_changed(object: PolicyObject, p: &EffectivePolicy) -> TopologyEventKind {
    TopologyEventKind::PolicyChanged {
        object,
        policy: p.policy_name().map(str::to_owned),
        operator_policy: p.operator_policy_name().map(str::to_owned),
    }
}

/// The event a snapshot lists for an object: only for one with a policy.
pub(super) fn policy_event(object: PolicyObject, p: &EffectivePolicy) -> Option<TopologyEventKind> {
    (p.policy.is_some() || p.operator_policy.is_some()).then(|| policy_changed(object, p))
}

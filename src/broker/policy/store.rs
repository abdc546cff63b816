//! A vhost's policies, operator policies and runtime parameters.
//!
//! Plain data: the vhost holds it and changes it only under its topology lock (see
//! `topology::policy`), so that a queue declared while a policy changes gets either the
//! old policy and then the change, or the new one.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::definition::{ObjectKind, Policy, PolicyKind};
use super::effective::{EffectivePolicy, best};
use super::parameters::Parameter;

#[derive(Debug, Clone, Default)]
pub struct VHostPolicies {
    policies: BTreeMap<String, Arc<Policy>>,
    operator_policies: BTreeMap<String, Arc<Policy>>,
    /// By (component, name).
    parameters: BTreeMap<(String, String), Parameter>,
}

impl VHostPolicies {
    fn map(&self, kind: PolicyKind) -> &BTreeMap<String, Arc<Policy>> {
        match kind {
            PolicyKind::User => &self.policies,
            PolicyKind::Operator => &self.operator_policies,
        }
    }

    fn map_mut(&mut self, kind: PolicyKind) -> &mut BTreeMap<String, Arc<Policy>> {
        match kind {
            PolicyKind::User => &mut self.policies,
            PolicyKind::Operator => &mut self.operator_policies,
        }
    }

    /// Adds or replaces a policy (of its kind, by name).
    pub fn set(&mut self, policy: Policy) -> Arc<Policy> {
        let policy = Arc::new(policy);
        self.map_mut(policy.kind)
            .insert(policy.name.clone(), policy.clone());
        policy
    }

    /// Removes a policy; the removed one, if there was one.
    pub fn clear(&mut self, kind: PolicyKind, name: &str) -> Option<Arc<Policy>> {
        self.map_mut(kind).remove(name)
    }

    pub fn get(&self, kind: PolicyKind, name: &str) -> Option<Arc<Policy>> {
        self.map(kind).get(name).cloned()
    }

    /// The policies of `kind`, by name.
    pub fn list(&self, kind: PolicyKind) -> Vec<Arc<Policy>> {
        self.map(kind).values().cloned().collect()
    }

    /// The policies in force for the object `name` of `kind`.
    pub fn effective(&self, kind: ObjectKind, name: &[u8]) -> EffectivePolicy {
        EffectivePolicy {
            policy: best(self.policies.values(), kind, name),
            operator_policy: best(self.operator_policies.values(), kind, name),
        }
    }

    /// Adds or replaces a parameter.
    pub fn set_parameter(&mut self, p: Parameter) {
        self.parameters
            .insert((p.component.clone(), p.name.clone()), p);
    }

    pub fn clear_parameter(&mut self, component: &str, name: &str) -> Option<Parameter> {
        self.parameters
            .remove(&(component.to_owned(), name.to_owned()))
    }

    pub fn parameter(&self, component: &str, name: &str) -> Option<Parameter> {
        self.parameters
            .get(&(component.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The parameters of one component, or of all, by component then name.
    pub fn parameters(&self, component: Option<&str>) -> Vec<Parameter> {
        self.parameters
            .values()
            .filter(|p| component.is_none_or(|c| p.component == c))
            .cloned()
            .collect()
    }
}

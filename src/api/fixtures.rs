//! Ready-made specs shaped like Stader's seed clusters, for tests and docs.

use super::{
    BeaconNodes, ClusterLockSource, DistributedValidator, DistributedValidatorSpec, EnrSecretRef,
    LockKeyRef, MemberSpec, Network, OperatorClass, OperatorRef, SecretRef, ValidatorClient,
};

impl DistributedValidator {
    /// A valid DV named `name` with `classes.len()` members; member `i` is operated by
    /// `operator-i` of class `classes[i]`, runs share `i`, and gets clients round-robin.
    pub fn fixture(name: &str, classes: &[OperatorClass]) -> DistributedValidator {
        let members = classes
            .iter()
            .enumerate()
            .map(|(i, class)| MemberSpec {
                name: format!("m{i}"),
                index: i as u32,
                validator_client: Some(ValidatorClient::ALL[i % ValidatorClient::ALL.len()]),
                zone: None,
                operator: OperatorRef {
                    name: format!("operator-{i}"),
                    class: *class,
                },
                remote: false,
                external_address: None,
                node_port: None,
                key_share_secret: Some(SecretRef {
                    name: format!("{name}-m{i}-keystore"),
                }),
                enr_secret: Some(EnrSecretRef {
                    name: format!("{name}-m{i}-enr"),
                    key: crate::api::DEFAULT_ENR_KEY.to_owned(),
                }),
                resources: None,
                node_selector: Default::default(),
                tolerations: Vec::new(),
                images: None,
            })
            .collect();
        let spec = DistributedValidatorSpec {
            network: Network::Hoodi,
            middleware: Default::default(),
            cluster_lock: ClusterLockSource {
                config_map: Some(LockKeyRef {
                    name: format!("{name}-lock"),
                    key: crate::api::DEFAULT_LOCK_KEY.to_owned(),
                }),
                secret: None,
            },
            threshold: None,
            beacon_nodes: Some(BeaconNodes {
                endpoints: vec!["http://beacon.example:5052".to_owned()],
                headers_secret: None,
            }),
            test_network: None,
            charon: Default::default(),
            validator_clients: Default::default(),
            members,
            placement: Default::default(),
            client_diversity: Default::default(),
            operator_diversity: Default::default(),
            rollout: Default::default(),
            storage: Default::default(),
            network_policy: Default::default(),
            p2p: None,
        };
        DistributedValidator::new(name, spec)
    }

    /// Stader's 4-member shape: 2 permissioned + 2 permissionless.
    pub fn fixture_four(name: &str) -> DistributedValidator {
        use OperatorClass::{Permissioned as P, Permissionless as L};
        DistributedValidator::fixture(name, &[P, P, L, L])
    }

    /// Stader's 7-member shape: 3 permissioned + 4 permissionless.
    pub fn fixture_seven(name: &str) -> DistributedValidator {
        use OperatorClass::{Permissioned as P, Permissionless as L};
        DistributedValidator::fixture(name, &[P, P, P, L, L, L, L])
    }
}

//! Names, label keys, ports, volumes and containers of every object the operator makes, defined
//! once.

/// Field manager of every server-side apply, and the user agent deletes are attributed to.
pub const FIELD_MANAGER: &str = "dvt-operator";
/// Reported as the controller in Events.
pub const CONTROLLER_NAME: &str = "dvt-operator";

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
/// The DV a child object belongs to (value: the DV's name).
pub const LABEL_DV: &str = "dvt.io/distributed-validator";
/// The member a child object belongs to (value: the member's name).
pub const LABEL_MEMBER: &str = "dvt.io/member";
pub const LABEL_CLIENT: &str = "dvt.io/validator-client";
pub const LABEL_OPERATOR_CLASS: &str = "dvt.io/operator-class";
/// The member's position in the lock (its share index): Charon finds its own by its ENR; the
/// label lets a person (and the simulated cluster's Charon) select a member by it.
pub const LABEL_SHARE_INDEX: &str = "dvt.io/share-index";

/// Hash of everything a child object was built from; an object that already carries the
/// desired hash is not written again.
pub const ANNOTATION_SPEC_HASH: &str = "dvt.io/spec-hash";
/// Hash of a member's inputs (lock, its Secrets, its settings) on its pod template: a change
/// makes a new StatefulSet revision and marks the member outdated.
pub const ANNOTATION_INPUTS_HASH: &str = "dvt.io/inputs-hash";
/// Pod template annotation: the time of the last restart asked for the member (from the DV's
/// restart annotations); a new value makes the member outdated.
pub const ANNOTATION_RESTARTED_AT: &str = "dvt.io/restarted-at";
/// The DV's threshold on each member pod (Charon is ready only with this many peers).
pub const ANNOTATION_THRESHOLD: &str = "dvt.io/threshold";

pub const CONTAINER_CHARON: &str = "charon";
pub const CONTAINER_VALIDATOR_CLIENT: &str = "validator-client";
pub const INIT_IMPORT_KEYS: &str = "import-keys";
pub const INIT_PROPOSER_CONFIG: &str = "proposer-config";
pub const INIT_REMOVE_OLD_ENR_KEY_COPY: &str = "remove-old-enr-key-copy";
/// A client change's first step: the old client exports its slashing-protection history.
pub const INIT_EXPORT_SLASHING_PROTECTION: &str = "export-slashing-protection";
/// A client change's last step before the new client starts: it imports that history.
pub const INIT_IMPORT_SLASHING_PROTECTION: &str = "import-slashing-protection";
/// Every member's last init step: refuses to start a client on a volume that holds another
/// client's data whose history was never imported into it.
pub const INIT_CHECK_SLASHING_PROTECTION: &str = "check-slashing-protection";
/// Where a container's termination message is read from (the kubelet's default
/// `terminationMessagePath`): the migration steps write their summary there.
pub const TERMINATION_LOG: &str = "/dev/termination-log";

pub const VOLUME_CHARON_DATA: &str = "charon-data";
pub const VOLUME_VC_DATA: &str = "validator-client-data";
pub const VOLUME_LOCK: &str = "cluster-lock";
pub const VOLUME_ENR_KEY: &str = "enr-key";
pub const VOLUME_KEY_SHARE: &str = "key-share";
pub const VOLUME_TMP: &str = "tmp";

pub const MOUNT_CHARON_DATA: &str = "/charon/data";
/// Where a validator client's volume is mounted, in every client's image but Prysm's.
pub const MOUNT_VC_DATA: &str = "/validator/data";
/// Where it is mounted in Prysm's image, which holds Prysm's binary at the *file* `/validator`
/// (prysm v6.1.4 tools/prysm_image.bzl: `pkg_tar(srcs = [binary])` at the image root;
/// cmd/validator/BUILD.bazel: entrypoint `/validator`): nothing can be mounted below it. Found
/// on the real cluster, where runc refused the mount ("not a directory") and the member never
/// started; the simulated cluster mounts nothing and could not see it.
pub const MOUNT_VC_DATA_PRYSM: &str = "/validator-data";

/// Where `client`'s image sees the validator-client volume. Each client keeps its data in a
/// directory of its own name on the volume, so the paths inside the volume are the same in
/// every image.
pub fn vc_data_mount(client: crate::api::ValidatorClient) -> &'static str {
    match client {
        crate::api::ValidatorClient::Prysm => MOUNT_VC_DATA_PRYSM,
        _ => MOUNT_VC_DATA,
    }
}
pub const MOUNT_LOCK: &str = "/charon/lock";
pub const MOUNT_ENR_KEY: &str = "/charon/enr";
pub const MOUNT_KEY_SHARE: &str = "/charon/validator_keys";
pub const MOUNT_TMP: &str = "/tmp";

pub const LOCK_FILE: &str = "cluster-lock.json";
pub const ENR_KEY_FILE: &str = "charon-enr-private-key";

pub const PORT_VALIDATOR_API: i32 = 3600;
pub const PORT_P2P: i32 = 3610;
pub const PORT_MONITORING: i32 = 3620;
pub const PORT_VC_METRICS: i32 = 5064;

/// User and group every container runs as (restricted Pod Security Standard: non-root).
pub const RUN_AS_USER: i64 = 1000;

/// Replicas of every member StatefulSet: one pod per key share, never two signers.
pub const MEMBER_REPLICAS: i32 = 1;

/// The manager named when a member StatefulSet's replicas changed and nobody owns the field:
/// kube-apiserver (v1.37.2) records no owner at all for `kubectl scale --replicas=0` (the scale
/// subresource's field set is empty when replicas is 0), and takes the field from its applier.
pub const UNKNOWN_SCALER: &str = "the scale subresource";

/// `<dv>-<member>`: the member's StatefulSet and headless Service.
pub fn member_object_name(dv: &str, member: &str) -> String {
    format!("{dv}-{member}")
}

/// The Service that publishes a member's p2p port outside the cluster (`spec.p2p`).
pub fn member_p2p_service_name(dv: &str, member: &str) -> String {
    format!("{dv}-{member}-p2p")
}

/// The member's only pod (`replicas: 1`).
pub fn member_pod_name(dv: &str, member: &str) -> String {
    format!("{dv}-{member}-0")
}

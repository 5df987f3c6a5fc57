//! Nimbus: `nimbus_validator_client`, with keys imported by `nimbus_beacon_node deposits
//! import`, which the validator-client image does not contain: the import runs in the beacon
//! node image of the same release.
//!
//! Flags read at status-im/nimbus-eth2 v24.9.0 (the newest tag readable here; the image is
//! v25.9.2): `beacon_chain/conf.nim`, `ValidatorClientConf` for the client and
//! `BeaconNodeConf` for `deposits import`. Images: `docker/dist/binaries/Dockerfile.vc.amd64`
//! ships only `/home/user/nimbus_validator_client`; `Dockerfile.bn.amd64` ships
//! `/home/user/nimbus_beacon_node`.

use super::{ClientRun, InitStep, Invocation, StepImage, charon_api, script_end, script_prelude};
use crate::controller::model::{Cluster, Member};
use crate::controller::names::{INIT_IMPORT_KEYS, MOUNT_VC_DATA, PORT_VC_METRICS};

/// The validator-client image's repository, and the beacon-node image's that ships the importer.
const VC_REPOSITORY: &str = "nimbus-validator-client";
const BN_REPOSITORY: &str = "nimbus-eth2";
/// The beacon-node image of the pinned release, for a validator-client image named otherwise.
const DEFAULT_IMPORT_IMAGE: &str = "statusim/nimbus-eth2:multiarch-v25.9.2";

/// The image that imports keys for a member running `client_image`: the same repository path
/// and tag with `nimbus-validator-client` replaced by `nimbus-eth2` (so a mirror or another
/// release is followed), or the pinned beacon image when the name has no such part.
pub fn import_image(client_image: &str) -> String {
    match client_image.rfind(VC_REPOSITORY) {
        Some(at) => format!(
            "{}{BN_REPOSITORY}{}",
            &client_image[..at],
            &client_image[at + VC_REPOSITORY.len()..]
        ),
        None => DEFAULT_IMPORT_IMAGE.to_owned(),
    }
}

pub(super) fn run(cluster: &Cluster, member: &Member) -> ClientRun {
    let datadir = format!("{MOUNT_VC_DATA}/nimbus");
    // conf.nim, ValidatorClientConf.
    let mut flags = vec![
        format!("--data-dir={datadir}"),
        format!("--beacon-node={}", charon_api()),
        // Doppelganger detection waits epochs for the key to be silent, which a DV never is.
        "--doppelganger-detection=false".to_owned(),
        "--distributed".to_owned(),
        "--metrics".to_owned(),
        "--metrics-address=0.0.0.0".to_owned(),
        format!("--metrics-port={PORT_VC_METRICS}"),
    ];
    if cluster.builder_api {
        flags.push("--payload-builder=true".to_owned());
    }
    // keystore_management.nim, importKeystoresFromDir: the password comes on stdin; a failure
    // is only logged (exit 0), so the step checks that validators/0x<pubkey> (fsName) exists
    // afterwards. A key already imported is skipped, since a second import would fail.
    let import = Invocation::new(
        &["/home/user/nimbus_beacon_node", "deposits", "import"],
        "nimbus_beacon_node deposits import",
        vec![format!("--data-dir={datadir}"), "\"$tmp\"".to_owned()],
    );
    let script = format!(
        "{prelude}\
         \x20 if [ -d {datadir}/validators/0x$pubkey ]; then continue; fi\n\
         \x20 tmp=$(mktemp -d)\n\
         \x20 cp \"$keystore\" \"$tmp/\"\n\
         \x20 {import} < \"$password\"\n\
         \x20 rm -rf \"$tmp\"\n\
         \x20 [ -d {datadir}/validators/0x$pubkey ] || {{ echo \"$keystore: nimbus did not import 0x$pubkey\" >&2; exit 1; }}\n\
         {end}",
        prelude = script_prelude(),
        import = import.shell(),
        end = script_end(),
    );
    ClientRun {
        main: Invocation::new(
            &["/home/user/nimbus_validator_client"],
            "nimbus_validator_client",
            flags,
        ),
        init: vec![InitStep {
            name: INIT_IMPORT_KEYS,
            image: StepImage::Other(import_image(&member.client_image)),
            script,
            invocations: vec![import],
            env: Vec::new(),
            data_mount: MOUNT_VC_DATA,
        }],
    }
}

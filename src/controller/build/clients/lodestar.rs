//! Lodestar: `lodestar validator` reading keys laid out as its keymanager writes them.
//!
//! Flags read from the npm package @chainsafe/lodestar at 1.30.0 and 1.44.0 (the versions the
//! registry serves, either side of the pinned 1.35.0): `lib/cmds/validator/options.js` and
//! `lib/options/globalOptions.js`. Layout: `lib/cmds/validator/keymanager/persistedKeys.js`
//! (`keystoresDir/<pubkey>/voting-keystore.json`, password in `secretsDir/<pubkey>`).

use super::{ClientRun, InitStep, Invocation, StepImage, charon_api, script_end, script_prelude};
use crate::controller::model::Cluster;
use crate::controller::names::{INIT_IMPORT_KEYS, MOUNT_VC_DATA, PORT_VC_METRICS};

pub(super) fn run(cluster: &Cluster) -> ClientRun {
    let data = format!("{MOUNT_VC_DATA}/lodestar");
    let mut flags = vec![
        // globalOptions.js: --network, --dataDir.
        format!("--network={}", cluster.network.as_str()),
        format!("--dataDir={data}"),
        // options.js.
        format!("--keystoresDir={data}/keystores"),
        format!("--secretsDir={data}/secrets"),
        format!("--beaconNodes={}", charon_api()),
        "--distributed".to_owned(),
        "--metrics=true".to_owned(),
        "--metrics.address=0.0.0.0".to_owned(),
        format!("--metrics.port={PORT_VC_METRICS}"),
    ];
    if cluster.builder_api {
        // options.js: plain --builder means selection `default`; with Charon the block is the
        // builder's whenever one is offered (Obol moved from builderonly to builderalways).
        flags.push("--builder".to_owned());
        flags.push("--builder.selection=builderalways".to_owned());
    }
    // A key already laid out is skipped; a new one is written beside its place and renamed, so
    // neither a restart nor a read-only (0400) copy from the Secret stops the step (cp over an
    // existing 0400 file fails with EACCES where fsGroup is not applied).
    let script = format!(
        "{prelude}\
         \x20 dir={data}/keystores/0x$pubkey\n\
         \x20 secret={data}/secrets/0x$pubkey\n\
         \x20 if [ -s \"$dir/voting-keystore.json\" ] && [ -s \"$secret\" ]; then continue; fi\n\
         \x20 mkdir -p \"$dir\" {data}/secrets\n\
         \x20 cp \"$keystore\" \"$dir/.voting-keystore.json.new\"\n\
         \x20 chmod 0600 \"$dir/.voting-keystore.json.new\"\n\
         \x20 mv -f \"$dir/.voting-keystore.json.new\" \"$dir/voting-keystore.json\"\n\
         \x20 cp \"$password\" \"$secret.new\"\n\
         \x20 chmod 0600 \"$secret.new\"\n\
         \x20 mv -f \"$secret.new\" \"$secret\"\n\
         {end}",
        prelude = script_prelude(),
        end = script_end(),
    );
    ClientRun {
        main: Invocation::new(
            &["node", "/usr/app/packages/cli/bin/lodestar", "validator"],
            "validator",
            flags,
        ),
        init: vec![InitStep {
            name: INIT_IMPORT_KEYS,
            image: StepImage::Client,
            script,
            invocations: Vec::new(),
            env: Vec::new(),
            data_mount: MOUNT_VC_DATA,
        }],
    }
}

//! Prysm: the validator binary with an imported-keys wallet it creates on first start.
//!
//! Flags read at OffchainLabs/prysm v6.1.4: `cmd/validator/main.go` (`appFlags` plus
//! `features.ValidatorFlags`), `cmd/validator/flags/flags.go`, `cmd/flags.go`,
//! `config/features/flags.go`, and the subcommands in `cmd/validator/wallet/wallet.go`
//! (`create`) and `cmd/validator/accounts/accounts.go` (`import`, `list`). The image is
//! `gcr.io/offchainlabs/prysm/validator` with the binary at `/validator` and bash as
//! `/bin/sh` (cmd/validator/BUILD.bazel, tools/prysm_image.bzl).

use super::{ClientRun, InitStep, Invocation, StepImage, charon_api, script_end, script_prelude};
use crate::controller::model::Cluster;
use crate::controller::names::{INIT_IMPORT_KEYS, MOUNT_VC_DATA_PRYSM, PORT_VC_METRICS};

const VALIDATOR: &str = "/validator";

pub(super) fn run(cluster: &Cluster) -> ClientRun {
    let network = format!("--{}", cluster.network.as_str());
    let wallet = format!("--wallet-dir={MOUNT_VC_DATA_PRYSM}/prysm/wallet");
    let wallet_password =
        format!("--wallet-password-file={MOUNT_VC_DATA_PRYSM}/prysm/wallet-password.txt");
    let mut flags = vec![
        // config/features/flags.go: --mainnet, --hoodi, --sepolia, --holesky.
        network.clone(),
        // cmd/flags.go: --accept-terms-of-use, --datadir, --monitoring-host.
        "--accept-terms-of-use".to_owned(),
        format!("--datadir={MOUNT_VC_DATA_PRYSM}/prysm"),
        // cmd/validator/flags/flags.go.
        wallet.clone(),
        wallet_password.clone(),
        // Without --enable-beacon-rest-api (config/features/flags.go) the validator speaks gRPC
        // to --beacon-rpc-provider and ignores --beacon-rest-api-provider; Charon serves REST.
        "--enable-beacon-rest-api".to_owned(),
        format!("--beacon-rest-api-provider={}", charon_api()),
        "--distributed".to_owned(),
        "--monitoring-host=0.0.0.0".to_owned(),
        format!("--monitoring-port={PORT_VC_METRICS}"),
    ];
    if cluster.builder_api {
        // cmd/validator/flags/flags.go: --enable-builder.
        flags.push("--enable-builder".to_owned());
    }
    let create = Invocation::new(
        &[VALIDATOR, "wallet", "create"],
        "wallet create",
        vec![
            network.clone(),
            "--accept-terms-of-use".to_owned(),
            "--keymanager-kind=imported".to_owned(),
            wallet.clone(),
            wallet_password.clone(),
        ],
    );
    // accounts_import.go only warns when a keystore fails to import (and exits 0), so the step
    // checks with `accounts list` (keymanager/local/keymanager.go prints each key as %#x) that
    // the key is in the wallet afterwards; a key already there is skipped.
    // The image has no grep (bash and coreutils only, tools/prysm_image.bzl): `case` matches.
    let list = Invocation::new(
        &[VALIDATOR, "accounts", "list"],
        "accounts list",
        vec![
            network.clone(),
            "--accept-terms-of-use".to_owned(),
            wallet.clone(),
            wallet_password.clone(),
        ],
    );
    let import = Invocation::new(
        &[VALIDATOR, "accounts", "import"],
        "accounts import",
        vec![
            network,
            "--accept-terms-of-use".to_owned(),
            "--keys-dir=\"$tmp\"".to_owned(),
            wallet,
            wallet_password,
            "--account-password-file=\"$password\"".to_owned(),
        ],
    );
    // The wallet password is generated once and kept on the data volume (prysm/wallet/direct is
    // where an imported wallet lives: validator/keymanager/types.go, Local.String()).
    let script = format!(
        "set -eu\n\
         mkdir -p {MOUNT_VC_DATA_PRYSM}/prysm\n\
         if [ ! -s {MOUNT_VC_DATA_PRYSM}/prysm/wallet-password.txt ]; then\n\
         \x20 (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > {MOUNT_VC_DATA_PRYSM}/prysm/wallet-password.txt)\n\
         fi\n\
         if [ ! -d {MOUNT_VC_DATA_PRYSM}/prysm/wallet/direct ]; then\n\
         \x20 {create}\n\
         fi\n\
         {prelude}\
         \x20 case \"$({list})\" in *\"0x$pubkey\"*) continue;; esac\n\
         \x20 tmp=$(mktemp -d)\n\
         \x20 cp \"$keystore\" \"$tmp/\"\n\
         \x20 {import}\n\
         \x20 rm -rf \"$tmp\"\n\
         \x20 case \"$({list})\" in *\"0x$pubkey\"*) ;; *) echo \"$keystore: prysm did not import 0x$pubkey\" >&2; exit 1;; esac\n\
         {end}",
        create = create.shell(),
        list = list.shell(),
        import = import.shell(),
        prelude = script_prelude().trim_start_matches("set -eu\n"),
        end = script_end(),
    );
    ClientRun {
        main: Invocation::new(&[VALIDATOR], "validator", flags),
        init: vec![InitStep {
            name: INIT_IMPORT_KEYS,
            image: StepImage::Client,
            script,
            invocations: vec![create, list, import],
            env: Vec::new(),
            data_mount: MOUNT_VC_DATA_PRYSM,
        }],
    }
}

//! What runs in a member pod: Charon's command line and, per validator client, its command
//! line, its init steps (key import, proposer config), and the image each step runs in. One file
//! per program owns its flags, each commented with where the program defines it.
//!
//! Every flag emitted here is checked by the tests against the program's own flag set, read from
//! its source at the pinned version (`flags/*.flags`, made by `scripts/read-client-flags.py`).
//! Bumping a pinned image means re-reading its flags: [`PINNED`] names the catalogue each image
//! was checked against.
//!
//! Keys arrive as Charon's DKG writes them: `keystore-N.json` with its password in
//! `keystore-N.txt`, mounted read-only from the member's own Secret.

pub mod charon;
mod lighthouse;
mod lodestar;
pub mod migration;
mod nimbus;
mod prysm;
mod teku;

use crate::api::ValidatorClient;
use crate::controller::model::{Cluster, Member};
use crate::controller::names::{MOUNT_KEY_SHARE, PORT_VALIDATOR_API};

/// One program invocation: the executable and its subcommand words, then flags. `section` names
/// the flag set (in the program's catalogue) the flags belong to.
#[derive(Clone, Debug, PartialEq)]
pub struct Invocation {
    pub program: Vec<String>,
    pub section: &'static str,
    pub flags: Vec<String>,
}

impl Invocation {
    fn new(program: &[&str], section: &'static str, flags: Vec<String>) -> Invocation {
        Invocation {
            program: program.iter().map(|word| (*word).to_owned()).collect(),
            section,
            flags,
        }
    }

    /// The container's command: the executable (and for Lodestar, its script) alone, so that
    /// the subcommand reads as the first argument, as in the clients' own examples.
    pub fn command(&self) -> Vec<String> {
        let split = self.program_words_before_subcommand();
        self.program[..split].to_vec()
    }

    /// The container's arguments: subcommand words, then flags.
    pub fn args(&self) -> Vec<String> {
        let split = self.program_words_before_subcommand();
        self.program[split..]
            .iter()
            .chain(&self.flags)
            .cloned()
            .collect()
    }

    /// `node <script>` is one program; otherwise the first word is.
    fn program_words_before_subcommand(&self) -> usize {
        match self.program.first().map(String::as_str) {
            Some("node") => self.program.len().min(2),
            _ => self.program.len().min(1),
        }
    }

    /// The invocation as one line of a shell script. Flags are written as shell words already
    /// (values that expand variables are quoted where they are made).
    fn shell(&self) -> String {
        self.program
            .iter()
            .chain(&self.flags)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Which image an init step runs in.
#[derive(Clone, Debug, PartialEq)]
pub enum StepImage {
    /// The member's validator-client image.
    Client,
    /// Another image of the same client release (Nimbus imports keys with its beacon node).
    Other(String),
}

/// A shell script run once before the client starts, on every pod start: it must be
/// idempotent (an already imported key is fine) and fail on any real error.
#[derive(Clone, Debug, PartialEq)]
pub struct InitStep {
    pub name: &'static str,
    pub image: StepImage,
    pub script: String,
    /// The program invocations inside the script, for the flag-set test.
    pub invocations: Vec<Invocation>,
    /// Environment the script reads (never a secret: values land in the pod spec).
    pub env: Vec<(String, String)>,
    /// Where the image the step runs in sees the validator-client volume.
    pub data_mount: &'static str,
}

/// What the client's containers run.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientRun {
    pub main: Invocation,
    pub init: Vec<InitStep>,
}

/// Pinned images, the client tag each was checked against and why it differs where it does.
/// Each catalogue is a file in `flags/`.
pub struct Pin {
    pub client: ValidatorClient,
    pub image: &'static str,
    pub catalogues: &'static [&'static str],
}

/// The default image of each client, and the flag catalogues its command lines are checked
/// against. Where the pinned tag's source could not be read here, the nearest readable tags are
/// used (every flag must be in each of them): Lodestar's npm package is served at 1.30.0 and
/// 1.44.0 only, either side of the pinned 1.35.0; Lighthouse and Nimbus sources were readable
/// up to v5.3.0 and v24.9.0.
pub const PINNED: [Pin; 5] = [
    Pin {
        client: ValidatorClient::Lighthouse,
        image: "sigp/lighthouse:v7.1.0",
        catalogues: &["lighthouse-v5.3.0"],
    },
    Pin {
        client: ValidatorClient::Teku,
        image: "consensys/teku:25.9.3",
        catalogues: &["teku-25.9.3"],
    },
    Pin {
        client: ValidatorClient::Prysm,
        // Since v6.0.4 Prysm publishes to offchainlabs (prysm v6.1.4 cmd/validator/BUILD.bazel,
        // `repository` of push_images).
        image: "gcr.io/offchainlabs/prysm/validator:v6.1.4",
        catalogues: &["prysm-v6.1.4"],
    },
    Pin {
        client: ValidatorClient::Nimbus,
        image: "statusim/nimbus-validator-client:multiarch-v25.9.2",
        catalogues: &["nimbus-v24.9.0"],
    },
    Pin {
        client: ValidatorClient::Lodestar,
        image: "chainsafe/lodestar:v1.35.0",
        catalogues: &["lodestar-v1.30.0", "lodestar-v1.44.0"],
    },
];

/// The image a client uses when neither the DV nor the member names one.
pub fn default_image(client: ValidatorClient) -> &'static str {
    PINNED
        .iter()
        .find(|pin| pin.client == client)
        .map(|pin| pin.image)
        .unwrap_or_default()
}

/// Charon's validator API, pod-local: the only beacon node a validator client talks to.
fn charon_api() -> String {
    format!("http://127.0.0.1:{PORT_VALIDATOR_API}")
}

/// Shell lines shared by the import scripts: strict mode, a `pubkey_of` that prints a
/// keystore's public key (lower-case hex, no 0x), and a loop guard for an empty key directory.
/// Only shell built-ins and coreutils (`cat`, `tr`): the Prysm image is distroless Debian 11
/// with bash and coreutils and nothing else, no sed or grep (prysm v6.1.4
/// tools/prysm_image.bzl, the `tars` of `oci_image`).
fn script_prelude() -> String {
    format!(
        "set -eu\n\
         pubkey_of() {{ content=$(cat \"$1\"); rest=${{content#*\\\"pubkey\\\"}}; [ \"$rest\" != \"$content\" ] || return 0; rest=${{rest#*\\\"}}; value=${{rest%%\\\"*}}; value=${{value#0x}}; case $value in *[!0-9a-fA-F]*) return 0;; esac; printf '%s' \"$value\" | tr 'A-F' 'a-f'; }}\n\
         found=0\n\
         for keystore in {MOUNT_KEY_SHARE}/keystore-*.json; do\n\
         \x20 [ -e \"$keystore\" ] || break\n\
         \x20 found=1\n\
         \x20 password=\"${{keystore%.json}}.txt\"\n\
         \x20 pubkey=$(pubkey_of \"$keystore\")\n\
         \x20 [ -n \"$pubkey\" ] || {{ echo \"$keystore: no pubkey\" >&2; exit 1; }}\n"
    )
}

/// Closes the loop opened by [`script_prelude`]: no keystore at all is an error (a member
/// without its key share would validate nothing).
fn script_end() -> String {
    format!(
        "done\n[ \"$found\" = 1 ] || {{ echo \"no keystore-*.json in {MOUNT_KEY_SHARE}\" >&2; exit 1; }}\n"
    )
}

/// The client's run for one member.
pub fn client_run(cluster: &Cluster, member: &Member) -> ClientRun {
    let mut run = match member.client {
        ValidatorClient::Lighthouse => lighthouse::run(cluster),
        ValidatorClient::Teku => teku::run(cluster, member),
        ValidatorClient::Prysm => prysm::run(cluster),
        ValidatorClient::Nimbus => nimbus::run(cluster, member),
        ValidatorClient::Lodestar => lodestar::run(cluster),
    };
    run.main
        .flags
        .extend(cluster.client_extra_args.iter().cloned());
    run
}

#[cfg(test)]
mod tests;

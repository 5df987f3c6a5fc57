//! `dvt-operator export-slashing-protection`: a Job that exports one member's
//! slashing-protection history (EIP-3076 interchange) from its validator-client volume, for an
//! operator who moves the member by hand (to another cluster, another organisation, a client
//! the operator does not run). The Job runs the same export script as a client change's init
//! step, keeps the file on the volume and prints it, so `kubectl logs` hands it over.
//!
//! The member must be stopped first (no pod of its StatefulSet): a client still signing would
//! make the file stale, and the volume attaches to one node at a time.

use std::path::Path;
use std::process::ExitCode;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::{DistributedValidator, ValidatorClient};
use crate::controller::build::clients::StepImage;
use crate::controller::build::clients::migration::{export_script, interchange_dir, step_image};
#[cfg(test)]
use crate::controller::names::MOUNT_VC_DATA;
use crate::controller::names::{MOUNT_TMP, VOLUME_VC_DATA, vc_data_mount};

#[derive(Debug, thiserror::Error)]
pub enum ExportJobError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Dv(#[from] super::plan::PlanError),
    #[error("the DV has no member {member:?} (members: {known})")]
    NoMember { member: String, known: String },
    #[error(
        "member {member} pins no validator client: pass --client with the one it ran (kubectl get dv {dv} -o jsonpath='{{.status.members[?(@.name==\"{member}\")].validatorClient}}')"
    )]
    ClientUnknown { member: String, dv: String },
    #[error("writing the Job: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// The Job exporting `member`'s history as `client` wrote it.
pub fn export_job(
    dv: &DistributedValidator,
    member: &str,
    client: Option<ValidatorClient>,
    image: Option<&str>,
) -> Result<Job, ExportJobError> {
    let dv_name = dv.metadata.name.clone().unwrap_or_default();
    let spec = dv
        .spec
        .members
        .iter()
        .find(|m| m.name == member)
        .ok_or_else(|| ExportJobError::NoMember {
            member: member.to_owned(),
            known: dv
                .spec
                .members
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let client = client
        .or(spec.validator_client)
        .ok_or_else(|| ExportJobError::ClientUnknown {
            member: member.to_owned(),
            dv: dv_name.clone(),
        })?;
    let client_image = image.map(str::to_owned).unwrap_or_else(|| {
        crate::controller::validate::dv_client_image(&dv.spec.validator_clients.images, client)
    });
    let image = match step_image(client, &client_image) {
        StepImage::Client => client_image,
        StepImage::Other(image) => image,
    };
    let file = format!(
        "{}/{}-export.json",
        interchange_dir(client),
        client.as_str()
    );
    let (_, script) = export_script(dv.spec.network, client, &file, false);
    let set = crate::controller::names::member_object_name(&dv_name, member);
    let labels = std::collections::BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "dvt-operator-cli".to_owned(),
        ),
        ("dvt.io/dv".to_owned(), dv_name.clone()),
        ("dvt.io/member".to_owned(), member.to_owned()),
    ]);
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        ..VolumeMount::default()
    };
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(format!("{set}-export-slashing-protection")),
            namespace: dv.metadata.namespace.clone(),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(
                        crate::controller::build::restricted_pod_security_context(),
                    ),
                    containers: vec![Container {
                        name: "export-slashing-protection".to_owned(),
                        image: Some(image),
                        command: Some(vec![
                            "/bin/sh".to_owned(),
                            "-c".to_owned(),
                            // Only the file reaches the log (`kubectl logs` is the interchange
                            // file); the summary is the termination message, and the client's
                            // own output is shown only when the export fails.
                            format!(
                                "exec 3>&1 4>&2 >{MOUNT_TMP}/export.log 2>&1\n\
                                 trap 'status=$?; [ \"$status\" = 0 ] || cat {MOUNT_TMP}/export.log >&4; exit \"$status\"' EXIT\n\
                                 {script}cat \"$file\" >&3\n"
                            ),
                        ]),
                        volume_mounts: Some(vec![
                            mount(VOLUME_VC_DATA, vc_data_mount(client)),
                            mount("tmp", MOUNT_TMP),
                        ]),
                        security_context: Some(
                            crate::controller::build::restricted_security_context(),
                        ),
                        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
                        ..Container::default()
                    }],
                    volumes: Some(vec![
                        // The member's own claim, as its StatefulSet named it.
                        Volume {
                            name: VOLUME_VC_DATA.to_owned(),
                            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                claim_name: format!("{VOLUME_VC_DATA}-{set}-0"),
                                read_only: None,
                            }),
                            ..Volume::default()
                        },
                        Volume {
                            name: "tmp".to_owned(),
                            empty_dir: Some(EmptyDirVolumeSource::default()),
                            ..Volume::default()
                        },
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

/// `dvt-operator export-slashing-protection -f dv.yaml --member NAME [--client C] [--image I]`.
pub fn command(
    file: &Path,
    member: &str,
    client: Option<ValidatorClient>,
    image: Option<&str>,
) -> ExitCode {
    let run = || -> Result<String, ExportJobError> {
        let text = super::read_input(file).map_err(|source| ExportJobError::Read {
            path: file.display().to_string(),
            source,
        })?;
        let dv = super::plan::read_dv(&text)?;
        let job = export_job(&dv, member, client, image)?;
        let name = job.metadata.name.clone().unwrap_or_default();
        let mut yaml = format!(
            "# Stop the member first (its StatefulSet has no pod), then:\n\
             #   kubectl apply -f THIS && kubectl wait --for=condition=complete job/{name}\n\
             #   kubectl logs job/{name} > interchange.json\n\
             # The file stays on the member's volume; the Job's termination message names its sha256:\n\
             #   kubectl get pods -l job-name={name} -o jsonpath='{{.items[0].status.containerStatuses[0].state.terminated.message}}'\n"
        );
        let body = serde_yaml::to_string(&job)?;
        yaml.push_str(&body);
        Ok(yaml)
    };
    match run() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stader() -> DistributedValidator {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/stader-4.yaml"
        ))
        .unwrap();
        super::super::plan::read_dv(&text).unwrap()
    }

    #[test]
    fn the_job_exports_from_the_members_own_claim_with_its_clients_command() {
        let job = export_job(&stader(), "alpha", None, None).unwrap();
        let pod = job.spec.unwrap().template.spec.unwrap();
        let claim = pod.volumes.as_ref().unwrap()[0]
            .persistent_volume_claim
            .as_ref()
            .unwrap();
        assert_eq!(claim.claim_name, "validator-client-data-stader-4-alpha-0");
        let container = &pod.containers[0];
        assert!(
            container
                .image
                .as_deref()
                .unwrap()
                .starts_with("sigp/lighthouse:")
        );
        let script = &container.command.as_ref().unwrap()[2];
        assert!(
            script.contains("lighthouse account validator slashing-protection export"),
            "{script}"
        );
        assert!(script.ends_with("cat \"$file\" >&3\n"), "{script}");
        // Never skipped: a manual export always reads the old client's data afresh.
        assert!(!script.contains(".imported"));
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    }

    /// Runs the Job's script with a stand-in `lighthouse` whose export runs `body`.
    fn run_job_script(body: &str) -> (bool, String, String) {
        let job = export_job(&stader(), "alpha", None, None).unwrap();
        let script = job.spec.unwrap().template.spec.unwrap().containers[0]
            .command
            .clone()
            .unwrap()[2]
            .clone();
        let root = std::env::temp_dir().join(format!(
            "dvt-export-job-{}-{}",
            std::process::id(),
            body.len()
        ));
        let _ = std::fs::remove_dir_all(&root);
        for dir in ["data", "tmp", "bin"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        let fake = root.join("bin/lighthouse");
        std::fs::write(
            &fake,
            format!("#!/bin/sh\necho 'validator-dir path: x' >&2\nfor a in \"$@\"; do out=$a; done\n{body}\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let script = script
            .replace(MOUNT_VC_DATA, &root.join("data").display().to_string())
            .replace(MOUNT_TMP, &root.join("tmp").display().to_string())
            .replace(
                crate::controller::names::TERMINATION_LOG,
                &root.join("termination-log").display().to_string(),
            );
        let output = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", root.join("bin").display()),
            )
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&root);
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    #[test]
    fn the_jobs_log_is_the_interchange_file_and_a_failure_shows_why() {
        let interchange = r#"{"metadata":{"interchange_format_version":"5","genesis_validators_root":"0x00"},"data":[{"pubkey":"0xaa","signed_blocks":[],"signed_attestations":[]}]}"#;
        let (ok, stdout, stderr) =
            run_job_script(&format!("printf '%s' '{interchange}' > \"$out\""));
        assert!(ok, "{stderr}");
        assert_eq!(stdout, interchange);
        assert_eq!(stderr, "");
        let (ok, stdout, stderr) = run_job_script("echo 'Unable to open database' >&2; exit 1");
        assert!(!ok);
        assert_eq!(stdout, "");
        assert!(stderr.contains("Unable to open database"), "{stderr}");
    }

    #[test]
    fn nimbus_exports_with_its_beacon_node_image_and_unknown_clients_are_refused() {
        let mut dv = stader();
        let job = export_job(&dv, "alpha", Some(ValidatorClient::Nimbus), None).unwrap();
        let image = job.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .clone()
            .unwrap();
        assert!(image.starts_with("statusim/nimbus-eth2:"), "{image}");
        dv.spec.members[0].validator_client = None;
        let error = export_job(&dv, "alpha", None, None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("pass --client"), "{error}");
        let error = export_job(&dv, "zulu", None, None).unwrap_err().to_string();
        assert!(error.contains("no member \"zulu\""), "{error}");
    }
}

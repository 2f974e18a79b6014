//! What every role's pod needs besides its sources: the identity's credentials (keys
//! from the role's Secret, or the projected token), state_dir, a local vault's claim,
//! files vault writes, and the URLs it sends to (their ports; no credentials in them).

use std::path::Path;

use super::plan::{Dir, File, FileSource, Unit, file_key};
use super::units::{Builder, add_claim};
use crate::error::Error;
use crate::notify::Ping;
use crate::store::{Identity, Role, Target};

impl Builder<'_> {
    /// How `role` reaches the store: keys from the Secret, or the projected token.
    pub(super) fn identity(&mut self, unit: &mut Unit, role: Role) -> Result<(), Error> {
        if matches!(self.settings.target, Target::Local(_)) {
            return Ok(());
        }
        let id: &Identity = self.settings.identities.store(role);
        let section = format!("[identities.{}]", role.as_str());
        if id.profile.is_some() {
            return Err(Error::config(format!(
                "{section} profile needs the SDK's config files in the pod: use \
                 web_identity_token_file with role_arn (or key files) instead"
            )));
        }
        for var in [
            &id.access_key_id_env,
            &id.secret_access_key_env,
            &id.session_token_env,
        ] {
            self.env(unit, var);
        }
        for file in [&id.access_key_id_file, &id.secret_access_key_file]
            .into_iter()
            .flatten()
        {
            self.secret_file(unit, file)?;
        }
        if let Some(token) = &id.web_identity_token_file {
            unit.files.insert(File {
                path: self.paths.map(token),
                source: FileSource::Token,
            });
        } else if self.options.irsa && id.role_arn.is_some() {
            return Err(Error::config(format!(
                "{section}: with --irsa, set web_identity_token_file = \
                 \"/var/run/secrets/eks.amazonaws.com/serviceaccount/token\" beside role_arn, \
                 so that vault assumes the role with the pod's token (a role_arn alone would \
                 assume it again from itself)"
            )));
        }
        unit.web_ports.extend(self.settings_endpoint_port());
        Ok(())
    }

    pub(super) fn irsa_role(&self, role: Role) -> Result<Option<String>, Error> {
        let arn = self
            .options
            .role_arn(role)
            .map(str::to_string)
            .or_else(|| self.settings.identities.store(role).role_arn.clone());
        if self.options.irsa && arn.is_none() && !matches!(self.settings.target, Target::Local(_)) {
            return Err(Error::config(format!(
                "--irsa: no role for the {0}: set [identities.{0}] role_arn or \
                 --role-arn-{0}",
                role.as_str()
            )));
        }
        Ok(arn)
    }

    pub(super) fn settings_endpoint_port(&self) -> Option<u16> {
        match &self.settings.target {
            Target::S3(s3) => s3
                .endpoint
                .as_deref()
                .and_then(|e| url::Url::parse(e).ok())
                .and_then(|u| u.port_or_known_default()),
            Target::Local(_) => None,
        }
    }

    /// A local vault's directory, on a claim (read-write for the writer).
    pub(super) fn vault_dir(&mut self, unit: &mut Unit, write: bool) -> Result<(), Error> {
        if let Target::Local(dir) = &self.settings.target {
            let pod = self.paths.map(dir);
            let claim = self.options.claim_for(&pod).ok_or_else(|| {
                Error::config(format!(
                    "[vault] target {} is a local directory on no --claim: give --claim \
                     {}=CLAIM (a volume every role's pod mounts), or use an S3 vault",
                    pod.display(),
                    pod.display()
                ))
            })?;
            add_claim(unit, &claim.path, &claim.name, !write);
        }
        Ok(())
    }

    /// state_dir: on its claim, else an emptyDir.
    pub(super) fn state_dir(&self, unit: &mut Unit) {
        let state = self.paths.map(&self.settings.signing.state_dir);
        match self.options.claim_for(&state) {
            Some(claim) => add_claim(unit, &claim.path, &claim.name, false),
            None => {
                unit.dirs.insert(Dir::Scratch {
                    path: state,
                    size_limit: Some("64Mi".into()),
                });
            }
        }
    }

    /// `[verify] cache_dir` in the verify pod: on a claim of its own, the cache outlives
    /// the pod; else (or on the claim of the writer's `state_dir`, which must not hold
    /// what the verifier trusts) an emptyDir, where each run reads everything again.
    /// Whether it is a claim of its own.
    pub(super) fn cache_dir(&self, unit: &mut Unit) -> bool {
        let cache = self.paths.map(&self.settings.verify.cache_dir);
        let state = self.paths.map(&self.settings.signing.state_dir);
        let writers = self.options.claim_for(&state).map(|c| c.name.as_str());
        match self.options.claim_for(&cache) {
            Some(claim) if Some(claim.name.as_str()) != writers => {
                add_claim(unit, &claim.path, &claim.name, false);
                true
            }
            _ => {
                unit.dirs.insert(Dir::Scratch {
                    path: cache,
                    size_limit: Some("256Mi".into()),
                });
                false
            }
        }
    }

    /// A file vault writes (a Prometheus textfile): only on a claim.
    pub(super) fn written_file(
        &self,
        unit: &mut Unit,
        file: &Path,
        key: &str,
    ) -> Result<(), Error> {
        let pod = self.paths.map(file);
        let claim = self.options.claim_for(&pod).ok_or_else(|| {
            Error::config(format!(
                "{key} {} would be written into the pod and lost with it: use pushgateway \
                 in Kubernetes, or give --claim DIR=CLAIM for its directory",
                pod.display()
            ))
        })?;
        add_claim(unit, &claim.path, &claim.name, false);
        Ok(())
    }

    pub(super) fn env(&self, unit: &mut Unit, var: &Option<String>) {
        if let Some(var) = var {
            unit.secret_env.insert(var.clone());
        }
    }

    pub(super) fn secret_file(&self, unit: &mut Unit, file: &Path) -> Result<(), Error> {
        let pod = self.paths.map(file);
        unit.files.insert(File {
            source: FileSource::Secret(file_key(&pod)?),
            path: pod,
        });
        Ok(())
    }

    pub(super) fn ping(&self, unit: &mut Unit, ping: &Ping, key: &str) -> Result<(), Error> {
        for url in [&ping.url, &ping.start, &ping.success, &ping.fail, &ping.log]
            .into_iter()
            .flatten()
        {
            self.web_url(unit, url, key)?;
        }
        Ok(())
    }

    /// A URL vault sends to: its port for the NetworkPolicy; no credentials in it, since
    /// the config is a ConfigMap.
    pub(super) fn web_url(&self, unit: &mut Unit, url: &str, key: &str) -> Result<(), Error> {
        let parsed = url::Url::parse(url).map_err(|e| Error::config(format!("{key}: {e}")))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(Error::config(format!(
                "{key}: the URL holds credentials, and in Kubernetes the config is a \
                 ConfigMap, readable by whoever can read the namespace's ConfigMaps: use a \
                 URL without them"
            )));
        }
        if let Some(port) = parsed.port_or_known_default() {
            unit.web_ports.insert(port);
        }
        Ok(())
    }
}

//! The fleet's Redis, as the command sees it: a handle on the library's
//! [`infuse::admin::Admin`] for one namespace. The key layout lives in the library; the
//! command never announces itself as a fleet process, reads or changes.

use std::time::Duration;

use infuse::admin::{Admin, BreakerRow, Record};
use infuse::Config;

use crate::term::clean;
use crate::Failure;

/// How long any Redis command may take before the command gives up.
const DEADLINE: Duration = Duration::from_secs(5);

/// How many known names an "unknown breaker" message lists at most.
const NAMES_SHOWN: usize = 20;

/// A connection to the fleet's Redis, for one namespace.
pub(crate) struct Fleet {
    admin: Admin,
    pub(crate) namespace: String,
}

impl Fleet {
    /// Connects (within [`DEADLINE`]) to the Redis `config` names, for its namespace.
    pub(crate) async fn connect(config: Config, namespace: String) -> Result<Fleet, Failure> {
        let config = config
            .redis_connect_timeout(DEADLINE)
            .redis_admin_timeout(DEADLINE)
            // The fleet's settings as its processes read them (`INFUSE_<SERVICE>_<SETTING>`):
            // the controls' open time, and the share a breaker in slow start admits
            // (the record holds when it closed; `slow_start` lives in the settings).
            .env_overrides(true)
            .allow_undeclared_overrides(true);
        let admin = Admin::connect(&config).await.map_err(|error| match error {
            // Without the library's advice to boot degraded: a command has nothing to boot.
            infuse::InitError::Unreachable { address, reason } => {
                Failure(format!("cannot reach Redis at {address}: {reason}"))
            }
            other => Failure::from(other),
        })?;
        Ok(Fleet { admin, namespace })
    }

    /// The library's operator handle.
    pub(crate) fn admin(&self) -> &Admin {
        &self.admin
    }

    /// Where Redis is (no password), for messages.
    pub(crate) fn address(&self) -> &str {
        self.admin.connection().address()
    }

    /// `service`'s row, or the error naming the known breakers when the namespace has
    /// nothing of it.
    pub(crate) async fn known(&self, service: &str) -> Result<BreakerRow, Failure> {
        let row = self.admin.breaker(service).await?;
        self.check_known(std::slice::from_ref(&row)).await?;
        Ok(row)
    }

    /// Fails, naming the known breakers, when the namespace has nothing of one of
    /// `rows`: no record, no history, no process using it, and not in the full listing
    /// (whose change log names breakers whose record expired). The full listing is read
    /// only for such a row.
    pub(crate) async fn check_known(&self, rows: &[BreakerRow]) -> Result<(), Failure> {
        // Collected before the await: an iterator adapter held across it would make the
        // future not provably `Send` (rust-lang/rust#102211).
        let doubtful: Vec<&str> = rows
            .iter()
            .filter(|row| looks_unknown(row))
            .map(|row| row.service.as_str())
            .collect();
        if doubtful.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = self
            .admin
            .breakers()
            .await?
            .breakers
            .into_iter()
            .map(|row| row.service)
            .collect();
        for service in doubtful {
            if names
                .binary_search_by(|name| name.as_str().cmp(service))
                .is_err()
            {
                return Err(self.unknown(service, &names));
            }
        }
        Ok(())
    }

    /// The error for a service the namespace has nothing of; `known`: its breakers.
    fn unknown(&self, service: &str, known: &[String]) -> Failure {
        let hint = if known.is_empty() {
            format!(
                "namespace {:?} has no breakers (check --namespace and --redis)",
                self.namespace
            )
        } else {
            let mut names: Vec<_> = known
                .iter()
                .take(NAMES_SHOWN)
                .map(|name| clean(name).into_owned())
                .collect();
            if known.len() > NAMES_SHOWN {
                names.push(format!("and {} more", known.len() - NAMES_SHOWN));
            }
            format!("known: {}", names.join(", "))
        };
        Failure(format!(
            "no breaker \"{}\" in namespace {:?}; {hint}",
            clean(service),
            self.namespace
        ))
    }
}

/// No record, no history, no process using it.
fn looks_unknown(row: &BreakerRow) -> bool {
    matches!(row.record, Record::Missing) && row.seen_by.is_empty() && row.last_transition.is_none()
}

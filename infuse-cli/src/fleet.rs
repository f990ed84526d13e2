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
            .env_overrides(false)
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
    /// nothing of it (no record, no history, no process using it).
    pub(crate) async fn known(&self, service: &str) -> Result<BreakerRow, Failure> {
        let row = self.admin.breaker(service).await?;
        if matches!(row.record, Record::Missing)
            && row.seen_by.is_empty()
            && row.last_transition.is_none()
        {
            return Err(self.unknown(service).await);
        }
        Ok(row)
    }

    /// The error for a service the namespace has nothing of.
    pub(crate) async fn unknown(&self, service: &str) -> Failure {
        let known = match self.admin.breakers().await {
            Ok(listing) => listing
                .breakers
                .into_iter()
                .map(|row| row.service)
                .collect(),
            Err(_) => Vec::new(),
        };
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

//! Static dispatch over the built-in stores, so breakers need no boxing per call.

use std::sync::Arc;
use std::time::Duration;

use crate::fleet::Fleet;
use crate::store::memory::MemoryStore;
use crate::store::{Outcome, Snapshot, Store, TrialToken};
use crate::{Settings, State, StorageError};

/// The store a registry's breakers use.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Memory(Arc<MemoryStore>),
    Redis(Arc<Fleet>),
}

impl Backend {
    /// Whether operations leave the process (and may be worth not waiting for).
    pub(crate) fn is_remote(&self) -> bool {
        matches!(self, Backend::Redis(_))
    }

    /// The shared state for a call that needs it now (never failing, never waiting longer
    /// than the call deadline: the policy answers instead).
    pub(crate) async fn sync_on_call(
        &self,
        service: &'static str,
        settings: &Settings,
    ) -> Snapshot {
        match self {
            Backend::Memory(store) => store.snapshot_now(service),
            Backend::Redis(fleet) => fleet.sync_on_call(service, settings).await,
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Backend::Memory($store) => $call,
            Backend::Redis($store) => $call,
        }
    };
}

impl Store for Backend {
    async fn register(
        &self,
        service: &'static str,
        settings: &Settings,
    ) -> Result<Snapshot, StorageError> {
        dispatch!(self, s => s.register(service, settings).await)
    }

    async fn snapshot(
        &self,
        service: &'static str,
        settings: &Settings,
    ) -> Result<Snapshot, StorageError> {
        dispatch!(self, s => s.snapshot(service, settings).await)
    }

    async fn record_failure(
        &self,
        service: &'static str,
        settings: &Settings,
        generation: u64,
    ) -> Result<Outcome, StorageError> {
        dispatch!(self, s => s.record_failure(service, settings, generation).await)
    }

    async fn record_success(
        &self,
        service: &'static str,
        settings: &Settings,
        generation: u64,
    ) -> Result<Outcome, StorageError> {
        dispatch!(self, s => s.record_success(service, settings, generation).await)
    }

    async fn acquire_trial(
        &self,
        service: &'static str,
        settings: &Settings,
        token: TrialToken,
        lease: Duration,
    ) -> Result<Outcome, StorageError> {
        dispatch!(self, s => s.acquire_trial(service, settings, token, lease).await)
    }

    async fn record_trial(
        &self,
        service: &'static str,
        settings: &Settings,
        token: TrialToken,
        success: bool,
    ) -> Result<Outcome, StorageError> {
        dispatch!(self, s => s.record_trial(service, settings, token, success).await)
    }

    fn release_trial(&self, service: &'static str, token: TrialToken) {
        dispatch!(self, s => s.release_trial(service, token))
    }

    async fn force(
        &self,
        service: &'static str,
        settings: &Settings,
        to: State,
    ) -> Result<Outcome, StorageError> {
        dispatch!(self, s => s.force(service, settings, to).await)
    }
}

//! The fleet's shared store, behind a trait (see [`Remote`]), so that the simulation can
//! drive the fleet over a faulty network of its own.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::core::lease::Grant;
use crate::core::{Command, Outcome, Settings, StorageError, Target};
use crate::store::redis::keys::Audit;
use crate::store::redis::{Announcement, Deadlines, LogRead, RedisStore};
use crate::store::Store;

/// A boxed answer of the [`Remote`] store.
pub(crate) type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

/// What the fleet asks of its shared store: [`RedisStore`] (the simulation in this
/// crate's tests puts a store of its own, with a fault injector, behind it). Only the
/// slow path goes through it (a call in the closed state never reaches the fleet), so
/// one boxed future per command costs nothing that matters.
pub(crate) trait Remote: Send + Sync + 'static {
    /// Applies one command (see [`Store::apply`]), under its deadline.
    fn apply<'a>(
        &'a self,
        service: &'static str,
        settings: &'a Settings,
        command: Command,
    ) -> Answer<'a, Outcome>;
    /// Reads the namespace's change log (see [`RedisStore::changes`]).
    fn changes<'a>(
        &'a self,
        breakers: usize,
        announcement: Option<&'a Announcement>,
    ) -> Answer<'a, LogRead>;
    /// Checks that the store answers (see [`RedisStore::ping`]).
    fn ping(&self) -> Answer<'_, ()>;
    /// Readies the store after a reconnect (see [`RedisStore::load_scripts`]).
    fn load_scripts(&self) -> Answer<'_, ()>;
    /// The deadlines in force.
    fn deadlines(&self) -> Deadlines;
    /// [`apply`](Remote::apply) under `deadline` instead of the command's own (see
    /// [`RedisStore::apply_within`]). A store that times commands some other way may
    /// keep its own deadline.
    fn apply_within<'a>(
        &'a self,
        service: &'static str,
        settings: &'a Settings,
        command: Command,
        deadline: Duration,
    ) -> Answer<'a, Outcome> {
        let _ = deadline;
        self.apply(service, settings, command)
    }
    /// Forces a record as [`apply`](Remote::apply) does, with who asked and why for the
    /// breaker's history (see [`RedisStore::force_audited`]); a store without a history
    /// drops `audit`.
    fn force_audited<'a>(
        &'a self,
        service: &'static str,
        settings: &'a Settings,
        target: Target,
        audit: &'a Audit,
    ) -> Answer<'a, Outcome> {
        let _ = audit;
        self.apply(service, settings, Command::Force(target))
    }
    /// Reports first attempts to a breaker's retry budget and asks for retry tokens (see
    /// [`RedisStore::retry_tokens`]); a store without a shared budget refuses, and each
    /// process keeps its own.
    fn retry_tokens<'a>(
        &'a self,
        service: &'a str,
        settings: &'a Settings,
        first_attempts: u64,
        wanted: u64,
    ) -> Answer<'a, u64> {
        let _ = (service, settings, first_attempts, wanted);
        refused("this store keeps no retry budget")
    }
    /// Asks for a lease of concurrency permits (see [`RedisStore::lease_permits`]); a
    /// store without shared leases refuses, and the lease's keeper follows the
    /// unavailable-policy.
    #[allow(clippy::too_many_arguments)]
    fn lease_permits<'a>(
        &'a self,
        service: &'a str,
        process: u64,
        keep: u32,
        want: u32,
        cap: u32,
        lease: Duration,
    ) -> Answer<'a, Grant> {
        let _ = (service, process, keep, want, cap, lease);
        refused("this store keeps no concurrency leases")
    }
    /// Withdraws the announcement of process `instance` (see
    /// [`RedisStore::withdraw`]); a store without announcements has nothing to do.
    fn withdraw(&self, instance: u64) -> Answer<'_, ()> {
        let _ = instance;
        Box::pin(std::future::ready(Ok(())))
    }
    /// Keeps `services` listed in the namespace's change log (see
    /// [`RedisStore::touch`]); a store without a listing has nothing to do.
    fn touch<'a>(&'a self, services: &'a [&'a str], every: Duration) -> Answer<'a, ()> {
        let _ = (services, every);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The answer of a store that does not keep what was asked of it.
fn refused<'a, T: Send + 'a>(what: &str) -> Answer<'a, T> {
    Box::pin(std::future::ready(Err(StorageError::Unavailable(
        what.to_owned(),
    ))))
}

impl Remote for RedisStore {
    fn apply<'a>(
        &'a self,
        service: &'static str,
        settings: &'a Settings,
        command: Command,
    ) -> Answer<'a, Outcome> {
        Box::pin(Store::apply(self, service, settings, command))
    }

    fn changes<'a>(
        &'a self,
        breakers: usize,
        announcement: Option<&'a Announcement>,
    ) -> Answer<'a, LogRead> {
        Box::pin(RedisStore::changes(self, breakers, announcement))
    }

    fn ping(&self) -> Answer<'_, ()> {
        Box::pin(RedisStore::ping(self))
    }

    fn load_scripts(&self) -> Answer<'_, ()> {
        Box::pin(RedisStore::load_scripts(self))
    }

    fn deadlines(&self) -> Deadlines {
        RedisStore::deadlines(self)
    }

    fn apply_within<'a>(
        &'a self,
        service: &'static str,
        settings: &'a Settings,
        command: Command,
        deadline: Duration,
    ) -> Answer<'a, Outcome> {
        Box::pin(RedisStore::apply_within(
            self, service, settings, command, deadline,
        ))
    }

    fn force_audited<'a>(
        &'a self,
        service: &'static str,
        settings: &'a Settings,
        target: Target,
        audit: &'a Audit,
    ) -> Answer<'a, Outcome> {
        Box::pin(RedisStore::force_audited(
            self, service, settings, target, audit,
        ))
    }

    fn retry_tokens<'a>(
        &'a self,
        service: &'a str,
        settings: &'a Settings,
        first_attempts: u64,
        wanted: u64,
    ) -> Answer<'a, u64> {
        Box::pin(RedisStore::retry_tokens(
            self,
            service,
            settings,
            first_attempts,
            wanted,
        ))
    }

    fn lease_permits<'a>(
        &'a self,
        service: &'a str,
        process: u64,
        keep: u32,
        want: u32,
        cap: u32,
        lease: Duration,
    ) -> Answer<'a, Grant> {
        Box::pin(RedisStore::lease_permits(
            self, service, process, keep, want, cap, lease,
        ))
    }

    fn touch<'a>(&'a self, services: &'a [&'a str], every: Duration) -> Answer<'a, ()> {
        Box::pin(RedisStore::touch(self, services, every))
    }

    fn withdraw(&self, instance: u64) -> Answer<'_, ()> {
        Box::pin(RedisStore::withdraw(self, instance))
    }
}

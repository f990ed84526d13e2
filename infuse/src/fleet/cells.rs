//! The breakers bound to a fleet: their cells, held weakly. A breaker keeps following the
//! fleet as long as any handle of it lives (even past its registry), and the fleet never
//! keeps a breaker alive.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, Weak};

use crate::core::State;
use crate::local::Cell;

/// The cells of the breakers bound to a fleet, by service.
#[derive(Debug, Default)]
pub(super) struct Cells(RwLock<HashMap<&'static str, Weak<Cell>>>);

impl Cells {
    /// Keeps `cell` up to date from now on.
    pub(super) fn track(&self, cell: &Arc<Cell>) {
        let mut cells = self.0.write().unwrap_or_else(PoisonError::into_inner);
        // Forget dropped breakers at every doubling: amortised O(1) per breaker (a pass
        // per insertion made registering B breakers cost B²).
        if cells.len().is_power_of_two() {
            cells.retain(|_, cell| cell.strong_count() > 0);
        }
        cells.insert(cell.service, Arc::downgrade(cell));
    }

    /// The live cell of `service`.
    pub(super) fn get(&self, service: &str) -> Option<Arc<Cell>> {
        let cells = self.0.read().unwrap_or_else(PoisonError::into_inner);
        cells.get(service).and_then(Weak::upgrade)
    }

    /// The live cells, by service: every pass over the breakers (recovery, resync) sends
    /// its commands in one order, so that a seeded simulation replays exactly.
    pub(super) fn all(&self) -> Vec<Arc<Cell>> {
        self.of(|_| true)
    }

    /// The live cells of the services `wanted` holds, by service (see [`Cells::all`]).
    pub(super) fn of(&self, wanted: impl Fn(&str) -> bool) -> Vec<Arc<Cell>> {
        let cells = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let mut cells: Vec<Arc<Cell>> = cells
            .iter()
            .filter(|(service, _)| wanted(service))
            .filter_map(|(_, cell)| cell.upgrade())
            .collect();
        cells.sort_unstable_by_key(|cell| cell.service);
        cells
    }

    /// How many breakers are bound (dropped ones included until the next sweep): this
    /// sets how often a full resync is due.
    pub(super) fn len(&self) -> usize {
        self.0.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Visits each live breaker's service and cell, in no order (under the read lock: no
    /// allocation): what the announcement counts (rejections, permits).
    pub(super) fn for_each_cell(&self, mut visit: impl FnMut(&'static str, &Cell)) {
        let cells = self.0.read().unwrap_or_else(PoisonError::into_inner);
        for (service, cell) in cells.iter() {
            if let Some(cell) = cell.upgrade() {
                visit(service, &cell);
            }
        }
    }

    /// Visits each live breaker's service and the state its view holds, in no order
    /// (under the read lock: no allocation).
    pub(super) fn for_each_state(&self, mut visit: impl FnMut(&'static str, State)) {
        let cells = self.0.read().unwrap_or_else(PoisonError::into_inner);
        for (service, cell) in cells.iter() {
            if let Some(cell) = cell.upgrade() {
                visit(service, cell.view.state());
            }
        }
    }
}

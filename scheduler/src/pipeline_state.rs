//! Per-pipeline reporting state of the scheduler process: Zuul's consecutive failure count and
//! the disabled flag behind `disable-after-consecutive-failures`.
//!
//! Zuul keeps this state until the tenant is reconfigured or Zuul restarts, and so does Sluice:
//! it lives in the scheduler's memory (a restart starts afresh) and belongs to one layout of
//! the tenant (a reload of the tenant's layout, when a branch tip of its projects moved, starts
//! afresh too). Queue state proper stays in the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::layout::TenantLayout;
use crate::pipeline::Pipeline;

/// What a report does to the consecutive failure count (Zuul's rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReportOutcome {
    /// Every job succeeded (even if the merge then failed): the count starts again at 0.
    Success,
    /// A job failed: one more consecutive failure.
    JobFailure,
    /// Merge conflicts, config errors, no jobs, dequeues: the count stays.
    Other,
}

#[derive(Debug)]
struct State {
    /// The layout the state belongs to; another layout of the tenant means a reconfiguration.
    layout: Weak<TenantLayout>,
    consecutive_failures: u32,
    disabled: bool,
}

/// The state of every pipeline, by tenant and pipeline name.
#[derive(Debug, Default)]
pub(crate) struct PipelineStates {
    states: Mutex<HashMap<(String, String), State>>,
}

impl PipelineStates {
    /// Whether `pipeline` of the tenant of `layout` is disabled.
    pub(crate) fn disabled(&self, layout: &Arc<TenantLayout>, pipeline: &str) -> bool {
        let Ok(mut states) = self.states.lock() else {
            return false;
        };
        Self::state(&mut states, layout, pipeline).disabled
    }

    /// Counts a report of `pipeline` and returns whether it goes to the `disabled` reporters:
    /// only reports after the one that reached the limit do (that one is still reported
    /// normally, as in Zuul).
    pub(crate) fn record(
        &self,
        layout: &Arc<TenantLayout>,
        pipeline: &Pipeline,
        outcome: ReportOutcome,
    ) -> bool {
        let Ok(mut states) = self.states.lock() else {
            return false;
        };
        let state = Self::state(&mut states, layout, &pipeline.name);
        match outcome {
            ReportOutcome::Success => state.consecutive_failures = 0,
            ReportOutcome::JobFailure => {
                state.consecutive_failures = state.consecutive_failures.saturating_add(1)
            }
            ReportOutcome::Other => {}
        }
        let was_disabled = state.disabled;
        if let Some(limit) = pipeline.disable_after {
            if !state.disabled && state.consecutive_failures >= limit {
                state.disabled = true;
                tracing::warn!(
                    tenant = %layout.tenant.name,
                    pipeline = %pipeline.name,
                    failures = state.consecutive_failures,
                    "pipeline disabled after consecutive failures: reports go to its disabled reporters until a restart or reconfiguration"
                );
            }
        }
        was_disabled
    }

    fn state<'a>(
        states: &'a mut HashMap<(String, String), State>,
        layout: &Arc<TenantLayout>,
        pipeline: &str,
    ) -> &'a mut State {
        let key = (layout.tenant.name.clone(), pipeline.to_string());
        let current = Arc::downgrade(layout);
        let state = states.entry(key).or_insert_with(|| State {
            layout: current.clone(),
            consecutive_failures: 0,
            disabled: false,
        });
        // The Weak keeps the old allocation's address from being reused, so a pointer
        // comparison tells layouts apart.
        if !Weak::ptr_eq(&state.layout, &current) {
            *state = State {
                layout: current,
                consecutive_failures: 0,
                disabled: false,
            };
        }
        state
    }
}

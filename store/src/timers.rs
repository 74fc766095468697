//! When the timer trigger last fired, per tenant, pipeline, time spec and project-branch, so a
//! restarted scheduler neither skips a periodic run that came due while it was down nor
//! repeats one it had already fired.

use crate::errors::{q, StoreError};
use crate::store::{get, Store};
use crate::tx::Tx;

/// One timer's last firing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerFire {
    /// Tenant.
    pub tenant: String,
    /// Pipeline.
    pub pipeline: String,
    /// The `time` spec as written.
    pub timespec: String,
    /// Canonical project name.
    pub project: String,
    /// Branch.
    pub branch: String,
    /// When it fired, milliseconds since the epoch.
    pub fired_at: i64,
}

impl Tx {
    /// Records that a timer fired (replacing its previous firing).
    pub async fn set_timer_fire(&mut self, fire: &TimerFire) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM timer_fires WHERE tenant = $1 AND pipeline = $2 AND timespec = $3 AND project = $4 AND branch = $5",
        )
        .bind(&fire.tenant)
        .bind(&fire.pipeline)
        .bind(&fire.timespec)
        .bind(&fire.project)
        .bind(&fire.branch)
        .execute(self.conn())
        .await
        .map_err(q("clear timer fire"))?;
        sqlx::query(
            "INSERT INTO timer_fires (tenant, pipeline, timespec, project, branch, fired_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&fire.tenant)
        .bind(&fire.pipeline)
        .bind(&fire.timespec)
        .bind(&fire.project)
        .bind(&fire.branch)
        .bind(fire.fired_at)
        .execute(self.conn())
        .await
        .map_err(q("record timer fire"))?;
        Ok(())
    }
}

impl Store {
    /// Every timer's last firing.
    pub async fn timer_fires(&self) -> Result<Vec<TimerFire>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant, pipeline, timespec, project, branch, fired_at FROM timer_fires",
        )
        .fetch_all(self.pool())
        .await
        .map_err(q("read timer fires"))?;
        rows.iter()
            .map(|r| {
                Ok(TimerFire {
                    tenant: get(r, "tenant")?,
                    pipeline: get(r, "pipeline")?,
                    timespec: get(r, "timespec")?,
                    project: get(r, "project")?,
                    branch: get(r, "branch")?,
                    fired_at: get(r, "fired_at")?,
                })
            })
            .collect()
    }
}

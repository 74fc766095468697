//! Migrations: numbered lists of portable DDL statements, applied in order, each version in
//! its own transaction together with the bump of `sluice_schema.version`.

/// `(version, statements)`, oldest first. Never edit a released version: add a new one.
pub(crate) const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        1,
        &[
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
            // Trigger events from drivers and commands, processed in id order by the scheduler.
            "CREATE TABLE events (
            id BIGINT PRIMARY KEY,
            connection TEXT NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            created BIGINT NOT NULL,
            processed BIGINT
        )",
            // The git driver's last seen refs, per connection and project.
            "CREATE TABLE git_refs (
            connection TEXT NOT NULL,
            project TEXT NOT NULL,
            refname TEXT NOT NULL,
            sha TEXT NOT NULL,
            PRIMARY KEY (connection, project, refname)
        )",
            // Review changes of the git driver's local review flow.
            "CREATE TABLE changes (
            connection TEXT NOT NULL,
            project TEXT NOT NULL,
            number BIGINT NOT NULL,
            refname TEXT NOT NULL,
            branch TEXT NOT NULL,
            topic TEXT NOT NULL,
            patchset TEXT NOT NULL,
            message TEXT NOT NULL,
            status TEXT NOT NULL,
            updated BIGINT NOT NULL,
            PRIMARY KEY (connection, project, number)
        )",
            "CREATE UNIQUE INDEX changes_ref ON changes (connection, project, refname)",
            "CREATE TABLE queue_items (
            uuid TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            pipeline TEXT NOT NULL,
            queue TEXT NOT NULL,
            seq BIGINT NOT NULL,
            state TEXT NOT NULL,
            live BIGINT NOT NULL,
            change_json TEXT NOT NULL,
            deps_json TEXT NOT NULL,
            event_id TEXT NOT NULL,
            enqueue_time BIGINT NOT NULL,
            buildset_uuid TEXT,
            result TEXT,
            dequeue_time BIGINT
        )",
            "CREATE INDEX queue_items_active ON queue_items (tenant, pipeline, state, seq)",
            "CREATE TABLE buildsets (
            uuid TEXT PRIMARY KEY,
            id BIGINT NOT NULL,
            tenant TEXT NOT NULL,
            pipeline TEXT NOT NULL,
            item_uuid TEXT NOT NULL,
            context_json TEXT NOT NULL,
            refs_json TEXT NOT NULL,
            state TEXT NOT NULL,
            result TEXT,
            message TEXT,
            event_id TEXT NOT NULL,
            event_timestamp BIGINT NOT NULL,
            created BIGINT NOT NULL,
            first_build_start_time TEXT,
            last_build_end_time TEXT
        )",
            "CREATE INDEX buildsets_item ON buildsets (item_uuid)",
            "CREATE TABLE builds (
            uuid TEXT PRIMARY KEY,
            id BIGINT NOT NULL,
            buildset_uuid TEXT NOT NULL,
            item_uuid TEXT NOT NULL,
            tenant TEXT NOT NULL,
            pipeline TEXT NOT NULL,
            job_name TEXT NOT NULL,
            voting BIGINT NOT NULL,
            attempt BIGINT NOT NULL,
            nodeset TEXT NOT NULL,
            result TEXT,
            final BIGINT NOT NULL,
            error_detail TEXT,
            log_url TEXT,
            start_time TEXT,
            end_time TEXT,
            data_json TEXT,
            created BIGINT NOT NULL
        )",
            "CREATE INDEX builds_buildset ON builds (buildset_uuid)",
            // Work for executors. `uuid` is the build's uuid; `state` is requested, running,
            // completed or canceled; a completed request is `processed` once the scheduler
            // recorded its result.
            "CREATE TABLE build_requests (
            uuid TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            pipeline TEXT NOT NULL,
            precedence BIGINT NOT NULL,
            seq BIGINT NOT NULL,
            state TEXT NOT NULL,
            executor TEXT,
            lease_expires BIGINT,
            cancel BIGINT NOT NULL,
            processed BIGINT NOT NULL,
            request_json TEXT NOT NULL,
            result_json TEXT,
            created BIGINT NOT NULL
        )",
            "CREATE INDEX build_requests_state ON build_requests (state, precedence, seq)",
        ],
    ),
    // Job graphs: a build waits for its dependencies with its request document kept here.
    (
        2,
        &[
            "ALTER TABLE builds ADD COLUMN dependencies_json TEXT",
            "ALTER TABLE builds ADD COLUMN pending_request_json TEXT",
        ],
    ),
    // Dependent pipelines' windows, per change queue.
    (
        3,
        &["CREATE TABLE queue_windows (
            tenant TEXT NOT NULL,
            pipeline TEXT NOT NULL,
            queue TEXT NOT NULL,
            size BIGINT NOT NULL,
            PRIMARY KEY (tenant, pipeline, queue)
        )"],
    ),
    // Reports to code-review systems (the GitHub driver's statuses, check runs, comments,
    // labels): queued in the transaction that decides them, sent and retried from here.
    (
        4,
        &[
            "CREATE TABLE reports (
            id BIGINT PRIMARY KEY,
            connection TEXT NOT NULL,
            item_uuid TEXT NOT NULL,
            action TEXT NOT NULL,
            op_json TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts BIGINT NOT NULL,
            next_attempt BIGINT NOT NULL,
            last_error TEXT,
            result_json TEXT,
            created BIGINT NOT NULL,
            updated BIGINT NOT NULL
        )",
            "CREATE INDEX reports_state ON reports (state, id)",
            "CREATE INDEX reports_item ON reports (item_uuid, id)",
        ],
    ),
    // Live logs: where a claimed build's log is streamed (Zuul's `worker_info`: the executor's
    // finger host and port, and its zone), and the finger gateways serving zones.
    (
        5,
        &[
            "ALTER TABLE build_requests ADD COLUMN worker_json TEXT",
            "CREATE TABLE finger_gateways (
            id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            port BIGINT NOT NULL,
            zone TEXT NOT NULL,
            heartbeat BIGINT NOT NULL
        )",
        ],
    ),
    // Paused builds (`zuul_return` `zuul.pause`): the executor records the data returned at
    // the pause and waits for `resume`; the scheduler marks the build paused for its children.
    (
        6,
        &[
            "ALTER TABLE build_requests ADD COLUMN paused_json TEXT",
            "ALTER TABLE build_requests ADD COLUMN resume BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE builds ADD COLUMN paused BIGINT NOT NULL DEFAULT 0",
        ],
    ),
    // Semaphores: one row per build holding one of a tenant's semaphores.
    (
        7,
        &["CREATE TABLE semaphore_holders (
            tenant TEXT NOT NULL,
            name TEXT NOT NULL,
            holder TEXT NOT NULL,
            PRIMARY KEY (tenant, name, holder)
        )"],
    ),
    // The web's status: when an executor claimed a build (its start while it runs).
    (8, &["ALTER TABLE build_requests ADD COLUMN claimed BIGINT"]),
    // The git driver's review facts for pipeline `require`/`reject`: the patchset a change was
    // approved at, and commit statuses (`<tenant>/<pipeline>` contexts) set by reports.
    (
        9,
        &[
            "CREATE TABLE change_approvals (
            connection TEXT NOT NULL,
            project TEXT NOT NULL,
            number BIGINT NOT NULL,
            patchset TEXT NOT NULL,
            approved BIGINT NOT NULL,
            PRIMARY KEY (connection, project, number)
        )",
            "CREATE TABLE commit_statuses (
            connection TEXT NOT NULL,
            project TEXT NOT NULL,
            sha TEXT NOT NULL,
            context TEXT NOT NULL,
            state TEXT NOT NULL,
            updated BIGINT NOT NULL,
            PRIMARY KEY (connection, project, sha, context)
        )",
        ],
    ),
    // Static nodes in use: one row per build slot taken (a node has `max-parallel-jobs`
    // slots), held by a build until released or until its executor stops renewing it.
    (
        10,
        &["CREATE TABLE node_locks (
            node TEXT NOT NULL,
            slot BIGINT NOT NULL,
            holder TEXT NOT NULL,
            expires BIGINT NOT NULL,
            PRIMARY KEY (node, slot)
        )"],
    ),
    // Autohold (Zuul's hold requests): a failing build matching a request keeps its nodes out
    // of use (`held_nodes`, until the request is deleted or the nodes' expiration passes) and
    // is recorded `held`.
    (
        11,
        &[
            "CREATE TABLE hold_requests (
            id BIGINT PRIMARY KEY,
            tenant TEXT NOT NULL,
            project TEXT NOT NULL,
            job TEXT NOT NULL,
            ref_filter TEXT NOT NULL,
            reason TEXT NOT NULL,
            max_count BIGINT NOT NULL,
            current_count BIGINT NOT NULL,
            node_expiration BIGINT NOT NULL,
            expired BIGINT,
            nodes_json TEXT NOT NULL,
            created BIGINT NOT NULL
        )",
            "CREATE TABLE held_nodes (
            node TEXT NOT NULL,
            hold_id BIGINT NOT NULL,
            build TEXT NOT NULL,
            expires BIGINT,
            PRIMARY KEY (node, hold_id, build)
        )",
            "ALTER TABLE builds ADD COLUMN held BIGINT NOT NULL DEFAULT 0",
        ],
    ),
    // The timer trigger's last firing per pipeline, time spec and project-branch.
    (
        12,
        &["CREATE TABLE timer_fires (
            tenant TEXT NOT NULL,
            pipeline TEXT NOT NULL,
            timespec TEXT NOT NULL,
            project TEXT NOT NULL,
            branch TEXT NOT NULL,
            fired_at BIGINT NOT NULL,
            PRIMARY KEY (tenant, pipeline, timespec, project, branch)
        )"],
    ),
    // One row per semaphore that takers update first (`Tx::take_semaphores`): on PostgreSQL
    // its row lock makes counting the holders and adding one a single step, now that
    // executors take playbook semaphores while the scheduler takes job semaphores.
    (
        14,
        &["CREATE TABLE semaphore_locks (
            tenant TEXT NOT NULL,
            name TEXT NOT NULL,
            takes BIGINT NOT NULL,
            PRIMARY KEY (tenant, name)
        )"],
    ),
    // The statsd reporter reads the builds created in the last two days every interval
    // (`Store::finished_builds_created_since`): without an index that is a scan of the table.
    (15, &["CREATE INDEX builds_created ON builds (created)"]),
];

//! The merge modes themselves: given a base commit (the branch tip, or the result of the
//! previous change on that branch) and a change commit already present in the repository,
//! compute the new branch tip entirely in the object database (no working tree involved).
//!
//! Semantics follow the git commands Zuul runs (`git merge [-s resolve] FETCH_HEAD`,
//! `git merge --squash` + commit, `git cherry-pick`, `git checkout FETCH_HEAD && git rebase
//! <base>`), including git's defaults: merges fast-forward when they can, a change already
//! contained in the branch is a no-op, rebases and cherry-picks drop commits that become empty.

use git2::{Commit, Index, MergeOptions, Oid, Repository, Signature, Tree};

use crate::errors::{Cx, MergeError};
use crate::state::MergeOp;
use crate::MergeMode;

/// One change to apply.
pub(crate) struct MergeInput<'a> {
    pub(crate) repo: &'a Repository,
    /// Canonical project name (for errors).
    pub(crate) project: &'a str,
    /// Target branch (for errors and ops).
    pub(crate) branch: &'a str,
    /// The change's commit or ref as given in the request (used in messages).
    pub(crate) reference: &'a str,
    /// Workspace-relative repository path (for ops).
    pub(crate) path: &'a str,
    pub(crate) base: Oid,
    pub(crate) change: Oid,
    pub(crate) mode: MergeMode,
    /// Signature for merge commits and the committer of replayed commits.
    pub(crate) signature: &'a Signature<'static>,
    pub(crate) timestamp: i64,
}

/// The new branch tip and the operations that produced it.
pub(crate) struct MergeOutcome {
    pub(crate) head: Oid,
    pub(crate) ops: Vec<MergeOp>,
}

/// The commit message Zuul gives merge and squash commits.
pub(crate) fn merge_message(reference: &str) -> String {
    format!("Merge '{reference}'\n")
}

/// Applies `input.change` onto `input.base` with `input.mode`.
pub(crate) fn apply(input: &MergeInput<'_>) -> Result<MergeOutcome, MergeError> {
    let m = Merger {
        input,
        cx: Cx::new(input.project, input.repo.path()),
        ops: vec![
            MergeOp::cmd(["git", "checkout", input.branch], input.path, None),
            MergeOp::cmd(
                ["git", "fetch", "origin", input.reference],
                input.path,
                None,
            ),
        ],
    };
    m.run()
}

struct Merger<'a> {
    input: &'a MergeInput<'a>,
    cx: Cx<'a>,
    ops: Vec<MergeOp>,
}

/// Where the change stands relative to the base.
enum Relation {
    /// The change is the base or already in it.
    UpToDate,
    /// The base is an ancestor of the change.
    FastForward,
    /// Both have commits the other lacks.
    Diverged,
}

impl<'a> Merger<'a> {
    fn run(mut self) -> Result<MergeOutcome, MergeError> {
        let head = match self.input.mode {
            MergeMode::Merge => self.merge(None)?,
            MergeMode::MergeResolve => self.merge(Some("resolve"))?,
            MergeMode::MergeRecursive => self.merge(Some("recursive"))?,
            MergeMode::MergeOrt => self.merge(Some("ort"))?,
            MergeMode::SquashMerge => self.squash()?,
            MergeMode::CherryPick => self.cherry_pick()?,
            MergeMode::Rebase => self.rebase(false)?,
            MergeMode::RebaseFirstParent => self.rebase(true)?,
        };
        Ok(MergeOutcome {
            head,
            ops: self.ops,
        })
    }

    fn repo(&self) -> &'a Repository {
        self.input.repo
    }

    fn op(&mut self, cmd: &[&str]) {
        self.ops.push(MergeOp::cmd(
            cmd.iter().copied(),
            self.input.path,
            Some(self.input.timestamp),
        ));
    }

    fn commit(&self, id: Oid) -> Result<Commit<'a>, MergeError> {
        self.repo()
            .find_commit(id)
            .map_err(self.cx.git(|| format!("read commit {id}")))
    }

    fn tree(&self, id: Oid) -> Result<Tree<'a>, MergeError> {
        self.repo()
            .find_tree(id)
            .map_err(self.cx.git(|| format!("read tree {id}")))
    }

    fn empty_tree(&self) -> Result<Tree<'a>, MergeError> {
        let id = self
            .repo()
            .treebuilder(None)
            .and_then(|tb| tb.write())
            .map_err(self.cx.git(|| "write empty tree".into()))?;
        self.tree(id)
    }

    fn is_descendant(&self, commit: Oid, ancestor: Oid) -> Result<bool, MergeError> {
        if commit == ancestor {
            return Ok(true);
        }
        self.repo().graph_descendant_of(commit, ancestor).map_err(
            self.cx
                .git(|| format!("check whether {commit} contains {ancestor}")),
        )
    }

    fn relation(&self) -> Result<Relation, MergeError> {
        let (base, change) = (self.input.base, self.input.change);
        if self.is_descendant(base, change)? {
            Ok(Relation::UpToDate)
        } else if self.is_descendant(change, base)? {
            Ok(Relation::FastForward)
        } else {
            Ok(Relation::Diverged)
        }
    }

    fn conflict(&self, index: &Index) -> MergeError {
        let mut paths: Vec<String> = Vec::new();
        if let Ok(conflicts) = index.conflicts() {
            for c in conflicts.flatten() {
                let entry = c.our.as_ref().or(c.their.as_ref()).or(c.ancestor.as_ref());
                if let Some(e) = entry {
                    let p = String::from_utf8_lossy(&e.path).into_owned();
                    if !paths.contains(&p) {
                        paths.push(p);
                    }
                }
            }
        }
        MergeError::Conflict {
            project: self.input.project.to_string(),
            branch: self.input.branch.to_string(),
            commit: self.input.reference.to_string(),
            mode: self.input.mode,
            paths,
        }
    }

    /// Writes a conflict-free merge index as a tree.
    fn write_index(&self, mut index: Index) -> Result<Oid, MergeError> {
        if index.has_conflicts() {
            return Err(self.conflict(&index));
        }
        index
            .write_tree_to(self.repo())
            .map_err(self.cx.git(|| "write merged tree".into()))
    }

    /// The tree of a three-way merge of base and change (with their merge base(s)).
    fn merged_tree(&self, resolve: bool) -> Result<Oid, MergeError> {
        let ours = self.commit(self.input.base)?;
        let theirs = self.commit(self.input.change)?;
        let mut opts = MergeOptions::new();
        if resolve {
            opts.no_recursive(true).find_renames(false);
        }
        let index = self
            .repo()
            .merge_commits(&ours, &theirs, Some(&opts))
            .map_err(
                self.cx
                    .git(|| format!("merge {} into {}", self.input.change, self.input.base)),
            )?;
        self.write_index(index)
    }

    fn new_commit(
        &self,
        author: &Signature<'_>,
        message: &str,
        tree: Oid,
        parents: &[Oid],
    ) -> Result<Oid, MergeError> {
        let tree = self.tree(tree)?;
        let parents = parents
            .iter()
            .map(|p| self.commit(*p))
            .collect::<Result<Vec<_>, _>>()?;
        let parent_refs: Vec<&Commit<'_>> = parents.iter().collect();
        self.repo()
            .commit(
                None,
                author,
                self.input.signature,
                message,
                &tree,
                &parent_refs,
            )
            .map_err(self.cx.git(|| "create commit".into()))
    }

    /// `git merge [-s strategy] -m "Merge '<ref>'" FETCH_HEAD`.
    fn merge(&mut self, strategy: Option<&str>) -> Result<Oid, MergeError> {
        let msg = merge_message(self.input.reference);
        let mut cmd = vec!["git", "merge", "-m", msg.trim_end()];
        if let Some(s) = strategy {
            cmd.extend(["-s", s]);
        }
        cmd.push("FETCH_HEAD");
        self.op(&cmd);
        self.merge_inner(strategy == Some("resolve"), &msg)
    }

    fn merge_inner(&self, resolve: bool, msg: &str) -> Result<Oid, MergeError> {
        match self.relation()? {
            Relation::UpToDate => Ok(self.input.base),
            Relation::FastForward => Ok(self.input.change),
            Relation::Diverged => {
                let tree = self.merged_tree(resolve)?;
                self.new_commit(
                    self.input.signature,
                    msg,
                    tree,
                    &[self.input.base, self.input.change],
                )
            }
        }
    }

    /// `git merge --squash FETCH_HEAD` then `git commit --allow-empty -m "Merge '<ref>'"`:
    /// always exactly one new single-parent commit.
    fn squash(&mut self) -> Result<Oid, MergeError> {
        let msg = merge_message(self.input.reference);
        self.op(&["git", "merge", "--squash", "FETCH_HEAD"]);
        self.op(&["git", "commit", "-m", msg.trim_end()]);
        let tree = match self.relation()? {
            Relation::UpToDate => self.commit(self.input.base)?.tree_id(),
            Relation::FastForward => self.commit(self.input.change)?.tree_id(),
            Relation::Diverged => self.merged_tree(false)?,
        };
        self.new_commit(self.input.signature, &msg, tree, &[self.input.base])
    }

    /// Commits reachable from the change but not from the base, oldest first.
    fn change_commits(&self) -> Result<Vec<Oid>, MergeError> {
        let mut walk = self
            .repo()
            .revwalk()
            .map_err(self.cx.git(|| "start revwalk".into()))?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)
            .map_err(self.cx.git(|| "sort revwalk".into()))?;
        walk.push(self.input.change)
            .map_err(self.cx.git(|| format!("walk from {}", self.input.change)))?;
        walk.hide(self.input.base)
            .map_err(self.cx.git(|| format!("hide {}", self.input.base)))?;
        walk.collect::<Result<Vec<_>, _>>().map_err(
            self.cx
                .git(|| format!("walk {}..{}", self.input.base, self.input.change)),
        )
    }

    /// Replays `c` (relative to its first parent; a root commit relative to the empty tree)
    /// onto `onto`; returns the resulting tree, and whether the replay changed nothing although
    /// `c` itself did (i.e. `c` was already applied).
    fn replay(&self, c: &Commit<'a>, onto: Oid) -> Result<(Oid, bool), MergeError> {
        let ancestor = match c.parent(0) {
            Ok(p) => p
                .tree()
                .map_err(self.cx.git(|| format!("read tree of {}", p.id())))?,
            Err(_) => self.empty_tree()?,
        };
        let onto_tree = self.commit(onto)?.tree_id();
        let ours = self.tree(onto_tree)?;
        let theirs = c
            .tree()
            .map_err(self.cx.git(|| format!("read tree of {}", c.id())))?;
        let index = self
            .repo()
            .merge_trees(&ancestor, &ours, &theirs, Some(&MergeOptions::new()))
            .map_err(self.cx.git(|| format!("apply {} onto {onto}", c.id())))?;
        let tree = self.write_index(index)?;
        let became_empty = tree == onto_tree && ancestor.id() != theirs.id();
        Ok((tree, became_empty))
    }

    fn message(c: &Commit<'_>) -> String {
        String::from_utf8_lossy(c.message_bytes()).into_owned()
    }

    /// Cherry-picks every commit of the change not on the branch, oldest first, keeping each
    /// commit's author and message. A commit that turns out to be already applied is skipped;
    /// a merge commit in the middle is picked relative to its first parent. When the change's tip
    /// is itself a merge commit it is merged with `-s resolve` instead, as Zuul does.
    fn cherry_pick(&mut self) -> Result<Oid, MergeError> {
        let tip = self.commit(self.input.change)?;
        if tip.parent_count() > 1 {
            let msg = merge_message(self.input.reference);
            self.op(&[
                "git",
                "merge",
                "-m",
                msg.trim_end(),
                "-s",
                "resolve",
                "FETCH_HEAD",
            ]);
            return self.merge_inner(true, &msg);
        }
        let mut current = self.input.base;
        for id in self.change_commits()? {
            let c = self.commit(id)?;
            let sha = id.to_string();
            let (tree, already_applied) = self.replay(&c, current)?;
            if already_applied {
                self.ops
                    .push(MergeOp::comment(format!("Already applied {sha}")));
                continue;
            }
            self.op(&["git", "cherry-pick", &sha, "--keep-redundant-commits"]);
            current = self.new_commit(&c.author(), &Self::message(&c), tree, &[current])?;
        }
        Ok(current)
    }

    /// `git checkout FETCH_HEAD && git rebase <base>`: the change's non-merge commits are
    /// replayed onto the base (keeping author and message, the committer becomes the merge
    /// identity); commits that become empty are dropped. With `first_parent`, only the change's
    /// first-parent chain is replayed and merge commits are kept (replayed relative to their
    /// first parent, their other parents preserved).
    fn rebase(&mut self, first_parent: bool) -> Result<Oid, MergeError> {
        self.op(&["git", "checkout", "FETCH_HEAD"]);
        let base_sha = self.input.base.to_string();
        if first_parent {
            self.ops.push(MergeOp::comment(format!(
                "Rebase the first-parent chain of {} onto {base_sha}, keeping merge commits",
                self.input.reference
            )));
        } else {
            self.op(&["git", "rebase", &base_sha]);
        }
        match self.relation()? {
            Relation::UpToDate => return Ok(self.input.base),
            Relation::FastForward => return Ok(self.input.change),
            Relation::Diverged => {}
        }
        let commits = if first_parent {
            self.first_parent_chain()?
        } else {
            self.change_commits()?
        };
        let mut current = self.input.base;
        for id in commits {
            let c = self.commit(id)?;
            let merge_commit = c.parent_count() > 1;
            if merge_commit && !first_parent {
                continue;
            }
            if c.parent_count() >= 1 && c.parent_id(0).ok() == Some(current) {
                // Already sits on the new base: keep it as is (git does not rewrite it).
                current = id;
                continue;
            }
            let (tree, became_empty) = self.replay(&c, current)?;
            if became_empty && !merge_commit {
                continue;
            }
            let mut parents = vec![current];
            parents.extend(c.parent_ids().skip(1));
            current = self.new_commit(&c.author(), &Self::message(&c), tree, &parents)?;
        }
        Ok(current)
    }

    /// The change's first-parent chain down to (not including) the first commit the base
    /// contains, oldest first.
    fn first_parent_chain(&self) -> Result<Vec<Oid>, MergeError> {
        let mut chain = Vec::new();
        let mut id = self.input.change;
        loop {
            if self.is_descendant(self.input.base, id)? {
                break;
            }
            chain.push(id);
            let c = self.commit(id)?;
            match c.parent_id(0) {
                Ok(p) => id = p,
                Err(_) => break,
            }
        }
        chain.reverse();
        Ok(chain)
    }
}

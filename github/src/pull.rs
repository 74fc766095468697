//! Pull request data as the scheduler needs it (title, body, head, base, labels, reviews,
//! statuses and check runs, files, branch protection), read from the REST API, and Zuul's
//! `canMerge` rule for dependent pipelines.

use serde_json::Value;

use crate::client::Client;
use crate::errors::GithubError;

/// The latest review of one user.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    /// Reviewer login.
    pub username: String,
    /// Reviewer e-mail, when GitHub shows it.
    pub email: Option<String>,
    /// Lower-cased review state: `approved`, `changes_requested`, `commented`, `dismissed`.
    pub state: String,
    /// Submission time (ms since the epoch).
    pub submitted_at: i64,
    /// The reviewer's permission on the repository (`admin`, `write`, `read`, `none`).
    pub permission: String,
}

/// One pull request.
#[derive(Debug, Clone, PartialEq)]
pub struct PullRequest {
    /// Base repository (`org/repo`).
    pub project: String,
    /// Number.
    pub number: i64,
    /// Title.
    pub title: String,
    /// Body (may be empty).
    pub body: String,
    /// Head commit.
    pub head_sha: String,
    /// Target branch.
    pub base_branch: String,
    /// `open` or `closed`.
    pub state: String,
    /// Merged.
    pub merged: bool,
    /// Draft.
    pub draft: bool,
    /// GitHub's merge check: `Some(false)` is a conflict, `None` not computed yet.
    pub mergeable: Option<bool>,
    /// Label names.
    pub labels: Vec<String>,
    /// Each reviewer's latest review.
    pub reviews: Vec<Review>,
    /// `user:context:state` of commit statuses and `app:name:conclusion` of check runs.
    pub statuses: Vec<String>,
    /// Contexts (statuses and check names) that succeeded on the head commit.
    pub successful: Vec<String>,
    /// Files changed (up to 300, as the API lists them).
    pub files: Vec<String>,
    /// The target branch is protected.
    pub protected: bool,
    /// Status contexts the target branch requires.
    pub required_contexts: Vec<String>,
    /// Approving reviews the target branch requires.
    pub required_approvals: i64,
    /// Author login.
    pub author: String,
    /// `https://<server>/<project>/pull/<number>`.
    pub url: String,
}

impl PullRequest {
    /// Open and not merged.
    pub fn is_open(&self) -> bool {
        self.state == "open" && !self.merged
    }

    /// Zuul's change message: `<title>\n\n<body>` (where `Depends-On:` footers are read).
    pub fn message(&self) -> String {
        format!("{}\n\n{}", self.title, self.body)
    }

    /// Why a dependent pipeline may not take it, or `Ok` (Zuul's `canMerge`). Contexts in
    /// `own_contexts` (the pipeline's own status/check name) are not required to be green yet.
    pub fn can_merge(&self, own_contexts: &[String]) -> Result<(), String> {
        if !self.is_open() {
            return Err("the pull request is not open".into());
        }
        if self.draft {
            return Err("the pull request is a draft".into());
        }
        if self.mergeable == Some(false) {
            return Err("GitHub reports a merge conflict".into());
        }
        let missing: Vec<&String> = self
            .required_contexts
            .iter()
            .filter(|c| !own_contexts.contains(c) && !self.successful.contains(c))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "required status checks are not successful: {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if self.reviews.iter().any(|r| r.state == "changes_requested") {
            return Err("a reviewer requested changes".into());
        }
        let approvals = self
            .reviews
            .iter()
            .filter(|r| r.state == "approved")
            .count() as i64;
        if approvals < self.required_approvals {
            return Err(format!(
                "{approvals} approving review(s), the branch requires {}",
                self.required_approvals
            ));
        }
        Ok(())
    }
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

fn ms(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0)
}

/// Reads pull request `number` of `project` with everything [`PullRequest`] holds.
pub async fn fetch_pull(
    client: &Client,
    project: &str,
    number: i64,
) -> Result<PullRequest, GithubError> {
    let pr = client
        .get(project, &format!("/repos/{project}/pulls/{number}"))
        .await?;
    let head_sha = pr
        .pointer("/head/sha")
        .and_then(Value::as_str)
        .ok_or_else(|| GithubError::Decode {
            path: format!("/repos/{project}/pulls/{number}"),
            message: "no head.sha".into(),
        })?
        .to_string();
    let base_branch = pr
        .pointer("/base/ref")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let labels = pr
        .get("labels")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|l| text(l, "name")).collect())
        .unwrap_or_default();
    let files = client
        .get_list(
            project,
            &format!("/repos/{project}/pulls/{number}/files"),
            3,
        )
        .await?
        .iter()
        .flat_map(|f| {
            let mut names = vec![text(f, "filename")];
            if let Some(prev) = f.get("previous_filename").and_then(Value::as_str) {
                names.push(prev.to_string());
            }
            names
        })
        .collect();
    // Only each user's latest review counts.
    let mut reviews: Vec<Review> = Vec::new();
    for r in client
        .get_list(
            project,
            &format!("/repos/{project}/pulls/{number}/reviews"),
            3,
        )
        .await?
    {
        let username = r
            .pointer("/user/login")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let state = text(&r, "state").to_ascii_lowercase();
        if state == "pending" || username.is_empty() {
            continue;
        }
        let review = Review {
            email: r
                .pointer("/user/email")
                .and_then(Value::as_str)
                .map(str::to_string),
            state,
            submitted_at: ms(&text(&r, "submitted_at")),
            permission: String::new(),
            username,
        };
        match reviews.iter_mut().find(|x| x.username == review.username) {
            Some(old) if old.submitted_at <= review.submitted_at => *old = review,
            Some(_) => {}
            None => reviews.push(review),
        }
    }
    for r in &mut reviews {
        r.permission = permission(client, project, &r.username).await?;
    }
    let mut statuses = Vec::new();
    let mut successful = Vec::new();
    let combined = client
        .get(
            project,
            &format!("/repos/{project}/commits/{head_sha}/status"),
        )
        .await?;
    for st in combined
        .get("statuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let context = text(st, "context");
        let state = text(st, "state");
        let creator = st
            .pointer("/creator/login")
            .and_then(Value::as_str)
            .unwrap_or("");
        statuses.push(format!("{creator}:{context}:{state}"));
        if state == "success" {
            successful.push(context);
        }
    }
    let checks = client
        .get(
            project,
            &format!("/repos/{project}/commits/{head_sha}/check-runs"),
        )
        .await?;
    for run in checks
        .get("check_runs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = text(run, "name");
        let conclusion = text(run, "conclusion");
        let app = run
            .pointer("/app/slug")
            .and_then(Value::as_str)
            .unwrap_or("");
        statuses.push(format!("{app}:{name}:{conclusion}"));
        if conclusion == "success" {
            successful.push(name);
        }
    }
    let branch = client
        .get(project, &format!("/repos/{project}/branches/{base_branch}"))
        .await?;
    let protected = branch
        .get("protected")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let required_contexts = branch
        .pointer("/protection/required_status_checks/contexts")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let required_approvals = if protected {
        match client
            .get(
                project,
                &format!("/repos/{project}/branches/{base_branch}/protection/required_pull_request_reviews"),
            )
            .await
        {
            Ok(v) => v
                .get("required_approving_review_count")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            // No review rule, or no permission to read it.
            Err(e) if matches!(e.status(), Some(403 | 404)) => 0,
            Err(e) => return Err(e),
        }
    } else {
        0
    };
    Ok(PullRequest {
        project: project.to_string(),
        number,
        title: text(&pr, "title"),
        body: text(&pr, "body"),
        head_sha,
        base_branch,
        state: text(&pr, "state"),
        merged: pr.get("merged").and_then(Value::as_bool).unwrap_or(false),
        draft: pr.get("draft").and_then(Value::as_bool).unwrap_or(false),
        mergeable: pr.get("mergeable").and_then(Value::as_bool),
        labels,
        reviews,
        statuses,
        successful,
        files,
        protected,
        required_contexts,
        required_approvals,
        author: pr
            .pointer("/user/login")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        url: client.config().pull_url(project, number),
    })
}

/// A user's permission on a repository (`admin`, `write`, `read` or `none`).
pub async fn permission(client: &Client, project: &str, user: &str) -> Result<String, GithubError> {
    match client
        .get(
            project,
            &format!("/repos/{project}/collaborators/{user}/permission"),
        )
        .await
    {
        Ok(v) => Ok(text(&v, "permission")),
        Err(e) if e.status() == Some(404) => Ok("none".into()),
        Err(e) => Err(e),
    }
}

/// Open pull requests whose head is `sha` (for `status` and `check_run` events).
pub async fn pulls_of_commit(
    client: &Client,
    project: &str,
    sha: &str,
) -> Result<Vec<i64>, GithubError> {
    Ok(client
        .get_list(project, &format!("/repos/{project}/commits/{sha}/pulls"), 1)
        .await?
        .iter()
        .filter(|p| text(p, "state") == "open")
        .filter_map(|p| p.get("number").and_then(Value::as_i64))
        .collect())
}

/// What `repo` is cloned from (`clone_url` of the repository).
pub async fn clone_url(client: &Client, project: &str) -> Result<String, GithubError> {
    let v = client.get(project, &format!("/repos/{project}")).await?;
    v.get("clone_url")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| GithubError::Decode {
            path: format!("/repos/{project}"),
            message: "no clone_url".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pr() -> PullRequest {
        PullRequest {
            project: "org/a".into(),
            number: 1,
            title: "t".into(),
            body: String::new(),
            head_sha: "abc".into(),
            base_branch: "main".into(),
            state: "open".into(),
            merged: false,
            draft: false,
            mergeable: Some(true),
            labels: vec![],
            reviews: vec![],
            statuses: vec![],
            successful: vec![],
            files: vec![],
            protected: true,
            required_contexts: vec!["t/gate".into(), "ci/other".into()],
            required_approvals: 1,
            author: "a".into(),
            url: String::new(),
        }
    }

    #[test]
    fn can_merge_rules() {
        let mut p = pr();
        assert!(p
            .can_merge(&["t/gate".into()])
            .unwrap_err()
            .contains("ci/other"));
        p.successful.push("ci/other".into());
        assert!(p
            .can_merge(&["t/gate".into()])
            .unwrap_err()
            .contains("approving"));
        p.reviews.push(Review {
            username: "r".into(),
            email: None,
            state: "approved".into(),
            submitted_at: 0,
            permission: "write".into(),
        });
        assert_eq!(p.can_merge(&["t/gate".into()]), Ok(()));
        p.draft = true;
        assert!(p.can_merge(&["t/gate".into()]).is_err());
        p.draft = false;
        p.mergeable = Some(false);
        assert!(p.can_merge(&["t/gate".into()]).is_err());
    }
}

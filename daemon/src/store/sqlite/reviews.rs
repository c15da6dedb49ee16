//! The SQLite rows of access reviews, their items and the suspensions of standing
//! eligibility they leave (tables `reviews`, `review_items`, `suspensions`).

use crate::model::{Review, ReviewDecision, ReviewItem};
use crate::store::StoreError;
use rusqlite::{params, OptionalExtension, Row, Transaction};

const REVIEW_COLUMNS: &str = "id, role, started_at, ends_at, reviewers, default_decision, \
                              recurring, started_by, completed_at";

fn review_from_row(r: &Row<'_>) -> rusqlite::Result<Review> {
    let reviewers: String = r.get(4)?;
    Ok(Review {
        id: r.get(0)?,
        role: r.get(1)?,
        started_at: r.get(2)?,
        ends_at: r.get(3)?,
        reviewers: reviewers
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        default_decision: r.get(5)?,
        recurring: r.get(6)?,
        started_by: r.get(7)?,
        completed_at: r.get(8)?,
    })
}

fn decision(text: Option<String>) -> rusqlite::Result<Option<ReviewDecision>> {
    match text {
        None => Ok(None),
        Some(t) => ReviewDecision::parse(&t).map(Some).ok_or_else(|| {
            rusqlite::Error::InvalidColumnType(
                0,
                format!("decision {t}"),
                rusqlite::types::Type::Text,
            )
        }),
    }
}

fn item_from_row(r: &Row<'_>) -> rusqlite::Result<ReviewItem> {
    let recommendation: Option<String> = Some(r.get(4)?);
    Ok(ReviewItem {
        review_id: r.get(0)?,
        user: r.get(1)?,
        standing: r.get(2)?,
        assigned: r.get(3)?,
        recommendation: decision(recommendation)?.unwrap_or(ReviewDecision::Keep),
        recommendation_why: r.get(5)?,
        decision: decision(r.get(6)?)?,
        decided_by: r.get(7)?,
        decided_at: r.get(8)?,
        comment: r.get(9)?,
        result: r.get(10)?,
        active: r.get(11)?,
        revision: r.get(12)?,
    })
}

fn reviews_where(
    tx: &Transaction<'_>,
    clause: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Review>, StoreError> {
    let sql = format!("SELECT {REVIEW_COLUMNS} FROM reviews WHERE {clause}");
    let mut stmt = tx.prepare_cached(&sql)?;
    let rows = stmt.query_map(args, review_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn review(tx: &Transaction<'_>, id: i64) -> Result<Option<Review>, StoreError> {
    Ok(reviews_where(tx, "id = ?1", [id])?.into_iter().next())
}

pub fn open_reviews(tx: &Transaction<'_>) -> Result<Vec<Review>, StoreError> {
    reviews_where(tx, "completed_at IS NULL ORDER BY ends_at, id", [])
}

pub fn next_review_end(tx: &Transaction<'_>) -> Result<Option<i64>, StoreError> {
    Ok(tx.query_row(
        "SELECT MIN(ends_at) FROM reviews WHERE completed_at IS NULL",
        [],
        |r| r.get(0),
    )?)
}

pub fn last_recurring_review(
    tx: &Transaction<'_>,
    role: &str,
) -> Result<Option<Review>, StoreError> {
    Ok(reviews_where(
        tx,
        "role = ?1 AND recurring = 1 ORDER BY started_at DESC, id DESC LIMIT 1",
        [role],
    )?
    .into_iter()
    .next())
}

pub fn review_items(tx: &Transaction<'_>, id: i64) -> Result<Vec<ReviewItem>, StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT review_id, user, standing, assigned, recommendation, recommendation_why,
                decision, decided_by, decided_at, comment, result, active, revision
         FROM review_items WHERE review_id = ?1 ORDER BY user",
    )?;
    let rows = stmt.query_map([id], item_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn last_grant_start(
    tx: &Transaction<'_>,
    user: &str,
    role: &str,
) -> Result<Option<i64>, StoreError> {
    Ok(tx.query_row(
        "SELECT MAX(started_at) FROM grants WHERE user = ?1 AND role = ?2",
        [user, role],
        |r| r.get(0),
    )?)
}

pub fn suspended(tx: &Transaction<'_>, user: &str, role: &str) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM suspensions WHERE user = ?1 AND role = ?2")?
        .query_row([user, role], |_| Ok(()))
        .optional()?
        .is_some())
}

pub fn insert_review(tx: &Transaction<'_>, r: &Review) -> Result<i64, StoreError> {
    tx.execute(
        "INSERT INTO reviews (role, started_at, ends_at, reviewers, default_decision, recurring,
                              started_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            r.role,
            r.started_at,
            r.ends_at,
            r.reviewers.join(","),
            r.default_decision,
            r.recurring,
            r.started_by
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

pub fn insert_review_item(tx: &Transaction<'_>, i: &ReviewItem) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO review_items (review_id, user, standing, assigned, active, recommendation,
                                   recommendation_why, revision)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            i.review_id,
            i.user,
            i.standing,
            i.assigned,
            i.active,
            i.recommendation.as_str(),
            i.recommendation_why,
            i.revision
        ],
    )?;
    Ok(())
}

pub fn decide_review_item(
    tx: &Transaction<'_>,
    id: i64,
    user: &str,
    decision: ReviewDecision,
    by: &str,
    at: i64,
    comment: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE review_items SET decision = ?3, decided_by = ?4, decided_at = ?5, comment = ?6
         WHERE review_id = ?1 AND user = ?2 AND result IS NULL",
        params![id, user, decision.as_str(), by, at, comment],
    )?;
    Ok(())
}

pub fn set_review_item_result(
    tx: &Transaction<'_>,
    id: i64,
    user: &str,
    result: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE review_items SET result = ?3 WHERE review_id = ?1 AND user = ?2",
        params![id, user, result],
    )?;
    Ok(())
}

pub fn complete_review(tx: &Transaction<'_>, id: i64, at: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE reviews SET completed_at = ?2 WHERE id = ?1 AND completed_at IS NULL",
        params![id, at],
    )?;
    Ok(())
}

pub fn suspend(
    tx: &Transaction<'_>,
    user: &str,
    role: &str,
    review_id: i64,
    at: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT OR IGNORE INTO suspensions (user, role, review_id, at) VALUES (?1, ?2, ?3, ?4)",
        params![user, role, review_id, at],
    )?;
    Ok(())
}

pub fn reinstate(tx: &Transaction<'_>, user: &str, role: &str) -> Result<bool, StoreError> {
    Ok(tx.execute(
        "DELETE FROM suspensions WHERE user = ?1 AND role = ?2",
        [user, role],
    )? > 0)
}

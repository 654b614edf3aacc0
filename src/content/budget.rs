//! The answer budget: how much record data one GraphQL request may load
//! (`QUIRE_MAX_RESPONSE_BYTES`), charged before the data is loaded, and the
//! gate that lets only a few large answers be built at once.
//!
//! Reads learn the size of each record's data before loading it (see
//! [`super::query`]); a read that would take the request over its limit
//! fails with `RESPONSE_TOO_LARGE` before any of that data is in memory,
//! and a request whose answer grows past [`LARGE_ANSWER_BYTES`] waits for
//! one of [`LARGE_ANSWERS_AT_ONCE`] permits first, holding nothing large
//! while it waits. The HTTP layer keeps the budget (and so the permit)
//! until the answer's bytes are sent.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OnceCell, Semaphore, SemaphorePermit};

use crate::error::{AppError, AppResult};

/// An answer whose record data grows past this many bytes is "large": it
/// is built only with a permit of [`LARGE_ANSWERS`].
pub const LARGE_ANSWER_BYTES: usize = 1024 * 1024;

/// How many large answers one instance builds (and sends) at once.
/// Building an answer holds it about twice at a time (the data and
/// async-graphql's value tree, then that tree and the bytes), so two
/// answers at the 32 MiB default limit stay near 128 MiB.
pub const LARGE_ANSWERS_AT_ONCE: usize = 2;

/// The permits for large answers, shared by every request of the process.
static LARGE_ANSWERS: Semaphore = Semaphore::const_new(LARGE_ANSWERS_AT_ONCE);

/// The budget of one GraphQL request (a batch shares one).
#[derive(Debug)]
pub struct AnswerBudget {
    limit: usize,
    used: AtomicUsize,
    large: OnceCell<SemaphorePermit<'static>>,
}

impl AnswerBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
            large: OnceCell::new(),
        }
    }

    /// The limit, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether this request holds a large-answer permit (its answer must
    /// keep the budget until the bytes are sent).
    pub fn is_large(&self) -> bool {
        self.large.get().is_some()
    }

    /// Bytes charged so far (an estimate of the answer's size, used to
    /// size its buffer).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Charges `bytes` of record data about to be loaded: `RESPONSE_TOO_LARGE`
    /// when the request would go over its limit; waits for a large-answer
    /// permit when it grows past [`LARGE_ANSWER_BYTES`].
    pub async fn charge(&self, bytes: usize) -> AppResult<()> {
        let used = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if used > self.limit {
            return Err(too_large(self.limit));
        }
        if used > LARGE_ANSWER_BYTES {
            self.large
                .get_or_try_init(|| LARGE_ANSWERS.acquire())
                .await
                .map_err(|_| AppError::internal("the large-answer gate is closed"))?;
        }
        Ok(())
    }
}

/// The refusal of an answer over `limit` bytes.
pub fn too_large(limit: usize) -> AppError {
    AppError::ResponseTooLarge(format!(
        "the answer would be larger than {limit} bytes (QUIRE_MAX_RESPONSE_BYTES): \
         ask for less (a smaller limit, fewer records or fewer fields)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_past_the_limit_and_gates_large_answers() {
        let budget = AnswerBudget::new(10 * 1024 * 1024);
        assert!(budget.charge(1024).await.is_ok());
        assert!(!budget.is_large(), "small answers need no permit");
        assert!(budget.charge(LARGE_ANSWER_BYTES).await.is_ok());
        assert!(budget.is_large(), "a large answer holds a permit");
        let over = budget.charge(9 * 1024 * 1024).await;
        assert!(matches!(over, Err(AppError::ResponseTooLarge(m)) if m.contains("10485760")));
        drop(budget);
        assert_eq!(LARGE_ANSWERS.available_permits(), LARGE_ANSWERS_AT_ONCE);
    }
}

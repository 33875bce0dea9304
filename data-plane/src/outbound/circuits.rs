//! Circuit-breaker transitions waiting to be told to the control plane,
//! which turns them into `circuit.opened` / `circuit.closed` platform
//! events (SPEC §8). Bounded: a node cut off from the control plane keeps
//! the latest [`MAX_WAITING`] and drops older ones (a breaker's state is
//! the node's memory too; this is news, not a record).

use std::collections::VecDeque;
use std::sync::Mutex;

use hookplane_model::CircuitTransition;
use tokio::sync::Notify;

/// Transitions kept while none can be sent.
pub const MAX_WAITING: usize = 1000;

#[derive(Debug, Default)]
pub struct CircuitNotices {
    waiting: Mutex<VecDeque<CircuitTransition>>,
    added: Notify,
}

impl CircuitNotices {
    /// Keeps `transition` for the control plane.
    pub fn push(&self, transition: CircuitTransition) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if waiting.len() == MAX_WAITING {
            waiting.pop_front();
        }
        waiting.push_back(transition);
        drop(waiting);
        self.added.notify_one();
    }

    /// Every transition kept, oldest first.
    pub fn take(&self) -> Vec<CircuitTransition> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).drain(..).collect()
    }

    /// Puts back what could not be sent, before anything newer.
    pub fn put_back(&self, unsent: Vec<CircuitTransition>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        for transition in unsent.into_iter().rev() {
            if waiting.len() == MAX_WAITING {
                break;
            }
            waiting.push_front(transition);
        }
    }

    /// Completes when a transition was pushed since the last call.
    pub async fn added(&self) {
        self.added.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transition(n: usize) -> CircuitTransition {
        CircuitTransition {
            organization_id: "org".into(),
            connector_id: format!("con_{n}"),
            target: "https://api.example.com/hook".into(),
            opened: true,
            time: hookplane_model::now(),
        }
    }

    #[test]
    fn keeps_the_latest_in_order_within_its_bound() {
        let notices = CircuitNotices::default();
        for n in 0..MAX_WAITING + 5 {
            notices.push(transition(n));
        }
        let taken = notices.take();
        assert_eq!(taken.len(), MAX_WAITING);
        assert_eq!(taken[0].connector_id, "con_5", "the oldest went");
        assert!(notices.take().is_empty());
        notices.push(transition(9999));
        notices.put_back(taken[..2].to_vec());
        let order: Vec<_> = notices.take().into_iter().map(|t| t.connector_id).collect();
        assert_eq!(order, ["con_5", "con_6", "con_9999"]);
    }
}

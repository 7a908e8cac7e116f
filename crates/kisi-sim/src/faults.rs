//! Faults the simulator can be told to inject: scripted (the next N matching requests) or
//! random from a seeded generator, so a seeded run replays exactly.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What goes wrong with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status (a 5xx, or a 429) with a Kisi-shaped error body and, if given, this
    /// `Retry-After` value (seconds or an HTTP date), without carrying out the request.
    Status { status: u16, retry_after: Option<String> },
    /// Never answer. With `after_commit` the request is carried out first, as when Kisi is slow
    /// to answer a write it has made.
    Hang { after_commit: bool },
    /// Carry out the request, then close the connection without answering: a write whose
    /// response is lost.
    DropResponse,
}

/// A fault for the requests that match a method and path (either may be left open), for a number
/// of times or until the faults are cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    fault: Fault,
    method: Option<String>,
    path: Option<String>,
    remaining: Option<u32>,
}

impl FaultRule {
    /// The fault for every request, until cleared.
    pub fn new(fault: Fault) -> Self {
        Self { fault, method: None, path: None, remaining: None }
    }

    /// Only for the next `times` matching requests.
    pub fn times(mut self, times: u32) -> Self {
        self.remaining = Some(times);
        self
    }

    /// Only for requests with this method (`"POST"`).
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Only for requests to this path: a concrete one (`/users/1001`) or a template
    /// (`/users/{id}`).
    pub fn path(mut self, path: &str) -> Self {
        self.path = Some(path.to_owned());
        self
    }

    fn matches(&self, method: &str, path: &str, template: &str) -> bool {
        self.method.as_deref().is_none_or(|wanted| wanted == method)
            && self.path.as_deref().is_none_or(|wanted| wanted == path || wanted == template)
    }
}

/// Faults drawn at random for each request, with these probabilities (each 0 to 1, their sum at
/// most 1), plus a latency drawn evenly up to `max_latency`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RandomFaults {
    /// Answer 503 without carrying out the request.
    pub server_error: f64,
    /// Carry out the request, then drop the connection.
    pub drop_response: f64,
    /// Never answer (carried out or not, at even odds).
    pub hang: f64,
    pub max_latency: Duration,
}

/// What happens to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) latency: Duration,
    pub(crate) fault: Option<Fault>,
}

#[derive(Debug)]
pub(crate) struct Faults {
    rules: Vec<FaultRule>,
    latency: Duration,
    random: Option<RandomFaults>,
    rng: StdRng,
}

impl Faults {
    pub(crate) fn new(seed: u64) -> Self {
        Self { rules: Vec::new(), latency: Duration::ZERO, random: None, rng: StdRng::seed_from_u64(seed) }
    }

    pub(crate) fn add_rule(&mut self, rule: FaultRule) {
        self.rules.push(rule);
    }

    pub(crate) fn set_latency(&mut self, latency: Duration) {
        self.latency = latency;
    }

    pub(crate) fn set_random(&mut self, random: Option<RandomFaults>) {
        self.random = random;
    }

    /// Removes scripted faults, latency and random faults; the generator keeps its position.
    pub(crate) fn clear(&mut self) {
        self.rules.clear();
        self.latency = Duration::ZERO;
        self.random = None;
    }

    pub(crate) fn decide(&mut self, method: &str, path: &str, template: &str) -> Decision {
        let mut latency = self.latency;
        let mut fault = self.take_scripted(method, path, template);
        if let Some(random) = self.random {
            // Three draws for every request whatever they decide, so the sequence of decisions
            // depends only on the seed and the number of requests.
            let roll: f64 = self.rng.random();
            let latency_roll: f64 = self.rng.random();
            let commit_roll: bool = self.rng.random();
            latency += random.max_latency.mul_f64(latency_roll);
            if fault.is_none() {
                fault = if roll < random.server_error {
                    Some(Fault::Status { status: 503, retry_after: None })
                } else if roll < random.server_error + random.drop_response {
                    Some(Fault::DropResponse)
                } else if roll < random.server_error + random.drop_response + random.hang {
                    Some(Fault::Hang { after_commit: commit_roll })
                } else {
                    None
                };
            }
        }
        Decision { latency, fault }
    }

    fn take_scripted(&mut self, method: &str, path: &str, template: &str) -> Option<Fault> {
        let index = self.rules.iter().position(|rule| rule.matches(method, path, template))?;
        let rule = &mut self.rules[index];
        let fault = rule.fault.clone();
        if let Some(remaining) = &mut rule.remaining {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                self.rules.remove(index);
            }
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_faults_apply_to_matching_requests_the_given_number_of_times() {
        let mut faults = Faults::new(1);
        let unavailable = Fault::Status { status: 503, retry_after: Some("2".into()) };
        faults.add_rule(FaultRule::new(unavailable.clone()).method("post").path("/role_assignments").times(2));
        assert_eq!(faults.decide("GET", "/role_assignments", "/role_assignments").fault, None);
        for _ in 0..2 {
            assert_eq!(
                faults.decide("POST", "/role_assignments", "/role_assignments").fault,
                Some(unavailable.clone())
            );
        }
        assert_eq!(faults.decide("POST", "/role_assignments", "/role_assignments").fault, None);
        faults.add_rule(FaultRule::new(Fault::DropResponse).path("/users/{id}"));
        assert_eq!(faults.decide("PATCH", "/users/7", "/users/{id}").fault, Some(Fault::DropResponse));
        assert_eq!(faults.decide("PATCH", "/users/7", "/users/{id}").fault, Some(Fault::DropResponse));
    }

    #[test]
    fn random_faults_replay_from_the_seed() {
        let random =
            RandomFaults { server_error: 0.2, drop_response: 0.2, hang: 0.1, max_latency: Duration::from_millis(50) };
        let run = |seed| {
            let mut faults = Faults::new(seed);
            faults.set_random(Some(random));
            (0..200).map(|_| faults.decide("GET", "/users", "/users")).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let decisions = run(7);
        let failed = decisions.iter().filter(|decision| decision.fault.is_some()).count();
        assert!((50..150).contains(&failed), "about half of 200 requests fail, not {failed}");
    }
}

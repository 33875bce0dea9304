//! Walking AIP-158 pages.

use std::future::Future;

use crate::Error;

/// Collects every item of a paged list: `fetch` receives the page token
/// (empty for the first page) and returns a page and the next token.
pub async fn paginate<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, Error>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, String), Error>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = fetch(token).await?;
        items.extend(page);
        if next.is_empty() {
            return Ok(items);
        }
        token = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn walks_until_the_token_is_empty() {
        let pages = [(vec![1, 2], "a"), (vec![3], "b"), (vec![], "")];
        let mut calls = Vec::new();
        let items = paginate(|token| {
            calls.push(token.clone());
            let (page, next) = pages[calls.len() - 1].clone();
            async move { Ok::<_, Error>((page, next.to_owned())) }
        })
        .await
        .unwrap();
        assert_eq!(items, [1, 2, 3]);
        assert_eq!(calls, ["", "a", "b"]);
    }
}

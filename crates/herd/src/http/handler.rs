//! The user's code: a [`Handler`] turns a [`Request`] into a [`Response`].

use super::{Request, Response};

/// Serves requests. Called on the loop's thread, once per request, in order; it must not
/// block for long (every connection of that loop waits meanwhile): wrap a handler that waits
/// in [`blocking`](super::blocking) (it then runs on the worker's pool), or answer later with
/// [`Response::defer`].
///
/// A panic is caught: that request gets a `500` and its connection closes; the worker lives on.
///
/// Implemented for closures:
///
/// ```
/// use herd::{Handler, Request, Response};
///
/// fn assert_handler(_: impl Handler) {}
/// assert_handler(|req: &Request<'_>, res: &mut Response| {
///     res.header("Content-Type", "text/plain").body(req.path());
/// });
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Answer `req` by filling in `res` (status 200 and an empty body unless told otherwise).
    fn call(&self, req: &Request<'_>, res: &mut Response);
}

impl<F> Handler for F
where
    F: Fn(&Request<'_>, &mut Response) + Send + Sync + 'static,
{
    fn call(&self, req: &Request<'_>, res: &mut Response) {
        self(req, res)
    }
}

/// A shared handler (one value behind several routes).
impl<H: Handler + ?Sized> Handler for std::sync::Arc<H> {
    fn call(&self, req: &Request<'_>, res: &mut Response) {
        (**self).call(req, res)
    }
}

//! One request's lifecycle: lazy load, no cookie for untouched sessions,
//! touch, expiry, regenerate, destroy, and no persistence on 5xx.

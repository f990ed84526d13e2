//! gRPC: the tower layer's classifier for tonic, and `From<BreakerError> for tonic::Status` (feature `tonic`).

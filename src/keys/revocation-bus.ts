/**
 * The key service's fan-out of changes between nodes. policy/ provides the implementations
 * (in-process, and Redis pub/sub for a cluster); the key service only needs this interface.
 */
/** Tells every node that a key changed (revoked, rotated, updated) so caches drop it at once. */
export interface RevocationBus {
  publish(keyId: string): Promise<void>;
  subscribe(handler: (keyId: string) => void): () => void;
  close(): Promise<void>;
}

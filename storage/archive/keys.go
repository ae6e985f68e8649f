package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/phigate/phigate/storage/blob"
)

// maxKeysDocument caps a document of published keys.
const maxKeysDocument = 16 << 20

// ParsePublishedKeys reads a JSON array of published keys (a --keys file,
// or the cluster's GET /v1/keys answer) and checks each.
func ParsePublishedKeys(b []byte) ([]PublishedKey, error) {
	if len(b) > maxKeysDocument {
		return nil, fmt.Errorf("archive: published keys: %d bytes (at most %d)", len(b), maxKeysDocument)
	}
	var list []PublishedKey
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("archive: published keys: want a JSON array of keys: %w", err)
	}
	var errs []error
	for _, k := range list {
		if err := k.Check(); err != nil {
			errs = append(errs, err)
		}
	}
	return list, errors.Join(errs...)
}

// StoreKeys reads the published keys the nodes copied into the store
// (keys/<id>.json). They are only as trustworthy as the store: whoever can
// write to it can add a key of their own. Pin the keys (a file, or the
// cluster's API) where the store's integrity is what is being checked.
// A malformed object is skipped and reported in the error.
func StoreKeys(ctx context.Context, store blob.Store) ([]PublishedKey, error) {
	list, err := store.List(ctx, KeysPrefix)
	if err != nil {
		return nil, fmt.Errorf("archive: list keys: %w", err)
	}
	var out []PublishedKey
	var errs []error
	for o, err := range newFetcher(store, 0).ordered(ctx, list) {
		if err != nil {
			return nil, err
		}
		var k PublishedKey
		if err := json.Unmarshal(o.Bytes, &k); err != nil {
			errs = append(errs, fmt.Errorf("archive: %s: %w", o.Key, err))
			continue
		}
		if err := k.Check(); err != nil {
			errs = append(errs, fmt.Errorf("archive: %s: %w", o.Key, err))
			continue
		}
		if KeyKey(k.ID) != o.Key {
			errs = append(errs, fmt.Errorf("archive: %s holds key %s", o.Key, k.ID))
			continue
		}
		out = append(out, k)
	}
	return out, errors.Join(errs...)
}

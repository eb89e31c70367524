package store

import (
	"context"
	"database/sql"
	"encoding/base64"
)

// settingBackbonePrivateKey is the node's backbone (node-to-node WireGuard) private key,
// sealed (base64) like the node key. A key of its own, not the node key: the node key is
// the one clients know (or the region key stands in for it), and a backbone peer must never
// be mistaken for a client.
const settingBackbonePrivateKey = "backbone.private_key"

// adBackbone is the additional data of the sealed backbone key.
const adBackbone = "popgate backbone private key v1"

// BackbonePrivateKey returns the node's backbone private key, generating and storing it on
// the first call. Its public key is what other nodes know the node's backbone by.
func (s *Store) BackbonePrivateKey(ctx context.Context) (Key, error) {
	var v string
	// kindNode: the node's own setting; the generation advances when it is created, as the
	// controller's own node then has a backbone key to publish.
	err := s.writeTx(ctx, kindNode, func(tx *sql.Tx) error {
		var ok bool
		var err error
		if v, ok, err = getSetting(ctx, tx, settingBackbonePrivateKey); err != nil || ok {
			return err
		}
		k, err := GeneratePrivateKey()
		if err != nil {
			return err
		}
		sealed, err := s.sealKey(k, []byte(adBackbone))
		if err != nil {
			return err
		}
		v = base64.StdEncoding.EncodeToString(sealed)
		return putSetting(ctx, tx, settingBackbonePrivateKey, v, micros(s.now()))
	})
	if err != nil {
		return Key{}, err
	}
	sealed, err := base64.StdEncoding.DecodeString(v)
	if err == nil {
		var k Key
		if k, err = s.openKey(sealed, []byte(adBackbone)); err == nil {
			return k, nil
		}
	}
	return Key{}, errorf(ErrInvalid, "secret key file %s does not open the backbone private key in %s (%v): it is not the key file this database was created with; restore the right file from a backup", s.keyPath, s.path, err)
}

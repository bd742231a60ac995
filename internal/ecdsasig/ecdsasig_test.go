package ecdsasig

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"math/big"
	"testing"
)

// refRaw is AppendRaw by encoding/asn1 and math/big, as pkg/httpsig converted before.
func refRaw(der []byte, size int) ([]byte, bool) {
	var sig struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) != 0 || sig.R == nil || sig.S == nil {
		return nil, false
	}
	// encoding/asn1 ignores elements after S inside the SEQUENCE, which crypto/ecdsa refuses: only input that
	// re-encodes to the same bytes is a signature.
	if again, err := asn1.Marshal(sig); err != nil || !bytes.Equal(again, der) {
		return nil, false
	}
	if sig.R.Sign() <= 0 || sig.S.Sign() <= 0 ||
		sig.R.BitLen() > 8*size || sig.S.BitLen() > 8*size {
		return nil, false
	}
	out := make([]byte, 2*size)
	sig.R.FillBytes(out[:size])
	sig.S.FillBytes(out[size:])
	return out, true
}

// refDER is AppendDER by encoding/asn1 and math/big.
func refDER(raw []byte) ([]byte, bool) {
	if len(raw) == 0 || len(raw)%2 != 0 || len(raw) > 2*maxSize {
		return nil, false
	}
	r, s := new(big.Int).SetBytes(raw[:len(raw)/2]), new(big.Int).SetBytes(raw[len(raw)/2:])
	if r.Sign() == 0 || s.Sign() == 0 {
		return nil, false
	}
	der, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
	return der, err == nil
}

func TestRoundTripWithCryptoECDSA(t *testing.T) {
	for _, c := range []struct {
		curve elliptic.Curve
		size  int
	}{{elliptic.P256(), 32}, {elliptic.P384(), 48}, {elliptic.P521(), 66}} {
		key, err := ecdsa.GenerateKey(c.curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256([]byte("signature base"))
		// Enough signatures that r and s have a set high bit in some (leading zero bytes are rarer: the fuzz
		// target's inputs cover those).
		for range 64 {
			der, err := ecdsa.SignASN1(rand.Reader, key, h[:])
			if err != nil {
				t.Fatal(err)
			}
			raw, ok := AppendRaw([]byte("x"), der, c.size)
			want, wantOK := refRaw(der, c.size)
			if !ok || !wantOK || !bytes.Equal(raw[1:], want) || raw[0] != 'x' {
				t.Fatalf("%s: AppendRaw = %x, %v; want x%x", c.curve.Params().Name, raw, ok, want)
			}
			back, ok := AppendDER(nil, raw[1:])
			if !ok || !bytes.Equal(back, der) {
				t.Fatalf("%s: AppendDER = %x, %v; want crypto/ecdsa's %x", c.curve.Params().Name, back, ok, der)
			}
			if !VerifyMessage(&key.PublicKey, crypto.SHA256, []byte("signature base"), raw[1:]) {
				t.Fatalf("%s: Verify refused a good signature", c.curve.Params().Name)
			}
		}
	}
}

func TestRefused(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte("signature base"))
	der, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := AppendRaw(nil, der, 32)
	zeroR := append(make([]byte, 32), raw[32:]...)
	flipped := bytes.Clone(raw)
	flipped[5] ^= 1
	for name, sig := range map[string][]byte{
		"zero r": zeroR, "odd length": raw[:63], "empty": nil, "one bit off": flipped, "too long": make([]byte, 134),
	} {
		if VerifyMessage(&key.PublicKey, crypto.SHA256, []byte("signature base"), sig) {
			t.Errorf("%s: VerifyMessage accepted", name)
		}
		if ecdsa.Verify(&key.PublicKey, h[:], new(big.Int).SetBytes(sig[:len(sig)/2]), new(big.Int).SetBytes(sig[len(sig)/2:])) {
			t.Errorf("%s: crypto/ecdsa accepted, the test is wrong", name)
		}
	}
	for name, d := range map[string][]byte{
		"trailing byte":   append(bytes.Clone(der), 0),
		"too wide for 16": der,
		"negative r":      {0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x01},
		"zero s":          {0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x00},
		"non-minimal r":   {0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01},
		"third integer":   {0x30, 0x09, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01},
	} {
		size := 32
		if name == "too wide for 16" {
			size = 16
		}
		if out, ok := AppendRaw(nil, d, size); ok {
			t.Errorf("%s: AppendRaw accepted: %x", name, out)
		}
	}
}

// signedDER is a fresh P-256 signature in DER, as crypto/ecdsa writes it.
func signedDER(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := ecdsa.SignASN1(rand.Reader, key, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestNoAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocates")
	}
	der := signedDER(t)
	var rawBuf [64]byte
	var derBuf [80]byte
	if n := testing.AllocsPerRun(100, func() {
		raw, _ := AppendRaw(rawBuf[:0], der, 32)
		AppendDER(derBuf[:0], raw)
	}); n != 0 {
		t.Fatalf("%v allocations per conversion, want 0", n)
	}
}

// FuzzConversions holds both conversions to encoding/asn1 with math/big, byte for byte and refusal for refusal.
func FuzzConversions(f *testing.F) {
	f.Add(signedDER(f), uint8(32))
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x01}, uint8(1))
	f.Add([]byte{0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}, uint8(1))
	f.Add(make([]byte, 64), uint8(32))
	f.Add([]byte{0x30, 0x09, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}, uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, size uint8) {
		sz := int(size)%maxSize + 1
		raw, ok := AppendRaw(nil, in, sz)
		want, wantOK := refRaw(in, sz)
		if ok != wantOK || !bytes.Equal(raw, want) {
			t.Fatalf("AppendRaw(%x, %d) = %x, %v; encoding/asn1 gives %x, %v", in, sz, raw, ok, want, wantOK)
		}
		d, ok := AppendDER(nil, in)
		wantD, wantOK := refDER(in)
		if ok != wantOK || !bytes.Equal(d, wantD) {
			t.Fatalf("AppendDER(%x) = %x, %v; encoding/asn1 gives %x, %v", in, d, ok, wantD, wantOK)
		}
	})
}

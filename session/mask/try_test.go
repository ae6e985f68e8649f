package mask_test

import (
	"bufio"
	"fmt"
	"os"
	"testing"

	"github.com/phigate/phigate/session/mask"
)

func TestTry(t *testing.T) {
	if os.Getenv("TRY") == "" {
		t.Skip("set TRY=file to print the findings for each line of file")
	}
	sc := mask.DefaultDetector().NewScanner()
	fh, err := os.Open(os.Getenv("TRY"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	in := bufio.NewScanner(fh)
	in.Buffer(nil, 1<<20)
	for in.Scan() {
		text := []byte(in.Text())
		f := sc.Scan(text)
		fmt.Println(string(mask.AppendTagged(nil, text, f)))
		for _, x := range f {
			fmt.Printf("   %s %q (%s)\n", x.Type, text[x.Start:x.End], x.Detector)
		}
	}
}

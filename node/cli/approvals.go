package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/session/approval"
)

// newApprovalsCommand is `phigate approvals`: approvers list, read and
// decide the requests of commands waiting for approval, through any
// node's API, as themselves (--token-file: the approver's own token).
func newApprovalsCommand() *cobra.Command {
	var af adminFlags
	cmd := &cobra.Command{
		Use:   "approvals",
		Short: "List, show, approve or deny commands waiting for approval",
		Long: `Commands that a grant's approval rules gate wait for people's decision
(docs/approvals.md). Approvers use these verbs against any node's API with
their own identity's token; only members of the rule's approver groups may
decide, never the identity that asked, and a request is decided exactly
once (one denial denies; the rule's required number of distinct approvals
approves).`,
	}
	af.add(cmd)
	var filter approval.Filter
	var state string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List approval requests you may see (newest first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			for k, v := range map[string]string{"state": state, "identity": filter.Identity, "resource": filter.Resource} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if filter.Limit > 0 {
				q.Set("limit", strconv.Itoa(filter.Limit))
			}
			var out []approval.Request
			if err := c.do(cmd.Context(), http.MethodGet, "/v1/approvals?"+q.Encode(), nil, nil, &out); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REQUEST\tSTATE\tIDENTITY\tRESOURCE\tRULE\tVOTES\tCREATED\tSTATEMENT")
			for _, r := range out {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", r.ID, r.State, r.Identity, r.Resource, r.Rule,
					approvals(r), r.Required, r.Created.Format(time.RFC3339), oneLine(r.Statement, 60))
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&state, "state", "", "only requests in this state (pending, approved, denied, expired, withdrawn, abandoned, used)")
	list.Flags().StringVar(&filter.Identity, "identity", "", "only this identity's")
	list.Flags().StringVar(&filter.Resource, "resource", "", "only on this resource")
	list.Flags().IntVar(&filter.Limit, "limit", 0, "at most this many")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one request: who asked, what, why, its votes and decision",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var r approval.Request
			if err := c.do(cmd.Context(), http.MethodGet, "/v1/approvals/"+url.PathEscape(args[0]), nil, nil, &r); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, r)
			}
			printRequest(cmd, &r)
			return nil
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var reason, window string
	decide := func(verb string, approve bool) *cobra.Command {
		short := "Approve a request (a one-time run, or --window for a time-boxed grant)"
		if !approve {
			short = "Deny a request"
		}
		c := &cobra.Command{
			Use:   verb + " ID --reason TEXT",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if strings.TrimSpace(reason) == "" {
					return errors.New("--reason TEXT is required: it is the evidence of why")
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				body, _ := json.Marshal(node.VoteBody{Reason: reason, Window: window})
				var r approval.Request
				if err := c.do(cmd.Context(), http.MethodPost, "/v1/approvals/"+url.PathEscape(args[0])+"/"+verb,
					http.Header{"Content-Type": {"application/json"}}, body, &r); err != nil {
					return err
				}
				printRequest(cmd, &r)
				return nil
			},
		}
		c.Flags().StringVar(&reason, "reason", "", "why (required; recorded)")
		if approve {
			c.Flags().StringVar(&window, "window", "", "grant the identity what the rule gates on the resource for this long (e.g. 30m) instead of one run; at most the rule's max_window")
		}
		return c
	}
	cmd.AddCommand(list, show, decide("approve", true), decide("deny", false))
	return cmd
}

func approvals(r approval.Request) int {
	n := 0
	for _, v := range r.Votes {
		if v.Approve {
			n++
		}
	}
	return n
}

func printRequest(cmd *cobra.Command, r *approval.Request) {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "request    %s\nstate      %s\n", r.ID, r.State)
	fmt.Fprintf(w, "identity   %s (groups %s)\nresource   %s\nsession    %s on %s, command %d\n", r.Identity, strings.Join(r.Groups, ", "), r.Resource, r.Session, r.Node, r.Command)
	fmt.Fprintf(w, "rule       %s of grant %s (%s): %s\n", r.Rule, r.Grant, r.Mode, strings.Join(r.Matched, ", "))
	fmt.Fprintf(w, "statement  %s\n", r.Statement)
	if r.Reason != "" {
		fmt.Fprintf(w, "reason     %s\n", r.Reason)
	}
	fmt.Fprintf(w, "needs      %d approval(s) from %s\ncreated    %s\nexpires    %s\n", r.Required, strings.Join(r.Approvers, ", "), r.Created.Format(time.RFC3339), r.Expires.Format(time.RFC3339))
	for _, v := range r.Votes {
		what := "approve"
		if !v.Approve {
			what = "deny"
		} else if v.Scope == approval.Window {
			what += " (window until " + v.Until.Format(time.RFC3339) + ")"
		}
		fmt.Fprintf(w, "vote       %s %s at %s on %s: %s\n", v.Approver, what, v.At.Format(time.RFC3339), v.Node, v.Reason)
	}
	if d := r.Decision; d != nil {
		fmt.Fprintf(w, "decision   %s by %s at %s on %s: %s\n", d.State, strings.Join(d.By, ", "), d.At.Format(time.RFC3339), d.Node, d.Reason)
		if !d.UsedAt.IsZero() {
			fmt.Fprintf(w, "used       at %s by session %s\n", d.UsedAt.Format(time.RFC3339), d.UsedSession)
		}
	}
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

func printJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

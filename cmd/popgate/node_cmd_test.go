package main

import (
	"slices"
	"strings"
	"testing"
)

func TestNodeServeFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string // "" for no error
	}{
		{nil, nil, ""},
		{[]string{"--controller-addr", "127.0.0.1:7443"}, nil, ""},
		{[]string{"--roles", "pop,exit", "--join", "popgate-join-1.x"}, nil, ""},
		{[]string{"--roles", "exit,controller,pop"}, nil, ""},
		{nil, map[string]string{"POPGATE_CONTROLLER_ADDR": "[::1]:7443", "POPGATE_BACKBONE_ENDPOINT": "192.0.2.1:51821"}, ""},
		{[]string{"--controller-addr", "nohost"}, nil, `controller addr "nohost" has no port`},
		{[]string{"--roles", "pop,router"}, nil, `role "router" is unknown`},
		{[]string{"--roles", "pop", "--controller-addr", "127.0.0.1:7443"}, nil, "--roles pop has no controller"},
		{[]string{"--roles", "controller,pop", "--join", "x"}, nil, "includes controller: give --roles pop"},
		{[]string{"--backbone-endpoint", "x"}, nil, `backbone endpoint "x" has no port`},
		{[]string{"--roles", "controller", "--controller-addr", "127.0.0.1:7443"}, nil, ""},
		{[]string{"--roles", "controller", "--backbone-endpoint", "192.0.2.1:51821"}, nil, "--roles controller carries no tenant traffic, so it has no backbone"},
	} {
		sc, err := newTestApp(t, tc.env).loadServeConfig(tc.args)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v %v: %v", tc.args, tc.env, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		case tc.want == "" && len(tc.args) == 0 && len(tc.env) == 0 && !slices.Equal(sc.Roles, []string{"controller", "pop", "exit"}):
			t.Errorf("default roles %v", sc.Roles)
		}
	}
}

func TestJoinNodeNameFromHost(t *testing.T) {
	for in, want := range map[string]string{"pop-1.example.com": "pop-1", "POP_2": "pop-2", "-x-": "x", "": "", "...": "", "ümlaut": "mlaut"} {
		if got := nodeNameFromHost(in); got != want {
			t.Errorf("nodeNameFromHost(%q) = %q, want %q", in, got, want)
		}
	}
}

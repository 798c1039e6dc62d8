package httpapi

import "net/http"

// CompatibleVersion is the Elasticsearch version whose inference API
// jetinfer serves, reported by GET / for clients that check it.
const CompatibleVersion = "9.1.0"

type rootVersion struct {
	Number                           string `json:"number"`
	BuildFlavor                      string `json:"build_flavor"`
	BuildType                        string `json:"build_type"`
	BuildHash                        string `json:"build_hash"`
	BuildDate                        string `json:"build_date"`
	BuildSnapshot                    bool   `json:"build_snapshot"`
	LuceneVersion                    string `json:"lucene_version"`
	MinimumWireCompatibilityVersion  string `json:"minimum_wire_compatibility_version"`
	MinimumIndexCompatibilityVersion string `json:"minimum_index_compatibility_version"`
}

type rootResponse struct {
	Name        string      `json:"name"`
	ClusterName string      `json:"cluster_name"`
	ClusterUUID string      `json:"cluster_uuid"`
	Version     rootVersion `json:"version"`
	Tagline     string      `json:"tagline"`
}

// root serves GET /, the cluster-info document clients fetch first.
func (a *API) root(w http.ResponseWriter, r *http.Request, _ pathParams) {
	a.writeJSON(w, r, http.StatusOK, rootResponse{
		Name:        a.cfg.NodeName,
		ClusterName: a.cfg.ClusterName,
		ClusterUUID: a.cfg.ClusterUUID,
		Version: rootVersion{
			Number:                           CompatibleVersion,
			BuildFlavor:                      "default",
			BuildType:                        "jetinfer",
			BuildHash:                        "unknown",
			BuildDate:                        "unknown",
			LuceneVersion:                    "none",
			MinimumWireCompatibilityVersion:  "8.18.0",
			MinimumIndexCompatibilityVersion: "8.0.0",
		},
		Tagline: "You Know, for Search",
	})
}

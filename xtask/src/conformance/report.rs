//! Reports: `report.json`, a self-contained `index.html`, the terminal
//! summary, and the gate (with the expectations file of allowed NON-STRICT
//! and UNIMPLEMENTED cases).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::cases::{category_name, id_key, may_be_unimplemented};
use super::runner::CaseResult;
use super::verdict::Behavior;

/// Results of one agent.
#[derive(Debug, Clone, Serialize)]
pub struct AgentReport {
    /// Agent name.
    pub name: String,
    /// `server` (tested by the suite as client) or `client`.
    pub kind: &'static str,
    /// Where it was reached (URL) or how it was started.
    pub target: String,
    /// Results by case id.
    pub cases: BTreeMap<String, CaseResult>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Tool name and version.
    pub suite: String,
    /// Unix time of the run (seconds).
    pub generated_unix: u64,
    /// Case filter used.
    pub filter: String,
    /// Category names.
    pub categories: BTreeMap<u32, &'static str>,
    /// Agents tested.
    pub agents: Vec<AgentReport>,
}

/// One allowed NON-STRICT case.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Allowance {
    /// Case id (exact).
    pub case: String,
    /// Agent name, or `*` for all.
    #[serde(default = "star")]
    pub agent: String,
    /// Why NON-STRICT is acceptable here (required).
    pub reason: String,
}

fn star() -> String {
    "*".into()
}

/// The expectations file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Expectations {
    /// Cases allowed to be NON-STRICT.
    #[serde(default)]
    pub non_strict_allowed: Vec<Allowance>,
    /// Compression cases (12/13) allowed to be UNIMPLEMENTED even though
    /// the agent speaks permessage-deflate (e.g. it declines 8-bit windows).
    #[serde(default)]
    pub unimplemented_allowed: Vec<Allowance>,
}

impl Expectations {
    /// Parses and validates the expectations JSON.
    pub fn parse(text: &str) -> Result<Expectations, String> {
        let e: Expectations =
            serde_json::from_str(text).map_err(|e| format!("expectations file: {e}"))?;
        for a in e.non_strict_allowed.iter().chain(&e.unimplemented_allowed) {
            if a.reason.trim().is_empty() {
                return Err(format!("expectations file: case {} has no reason", a.case));
            }
        }
        Ok(e)
    }

    fn find<'a>(list: &'a [Allowance], agent: &str, case: &str) -> Option<&'a str> {
        list.iter()
            .find(|a| {
                (a.case == case || (a.case.contains('*') && super::cases::selected(&a.case, case)))
                    && (a.agent == "*" || a.agent == agent)
            })
            .map(|a| a.reason.as_str())
    }

    fn allows(&self, agent: &str, case: &str) -> Option<&str> {
        Self::find(&self.non_strict_allowed, agent, case)
    }

    fn allows_unimplemented(&self, agent: &str, case: &str) -> Option<&str> {
        Self::find(&self.unimplemented_allowed, agent, case)
    }
}

/// Applies the gate; marks allowed NON-STRICT cases and returns the
/// problems (empty = pass).
///
/// UNIMPLEMENTED is accepted only in categories 12/13, and there only while
/// the agent never offered (client) or accepted (server) permessage-deflate
/// in any case and `require_compression` is off; the expectations file can
/// still allow single cases.
pub fn gate(
    agents: &mut [AgentReport],
    exp: &Expectations,
    require_compression: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    for a in agents.iter_mut() {
        let is_client = a.kind == "client";
        let speaks = a.cases.values().any(|r| r.peer_speaks_deflate(is_client));
        for (id, r) in a.cases.iter_mut() {
            let cat = id
                .split('.')
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            match r.verdict {
                Behavior::Failed => problems.push(format!("{}: {id} FAILED: {} / close {}: {}", a.name, r.result, r.behavior_close.label(), r.result_close)),
                Behavior::Unimplemented if !may_be_unimplemented(cat) => {
                    problems.push(format!("{}: {id} UNIMPLEMENTED outside categories 12/13", a.name))
                }
                Behavior::Unimplemented if require_compression || speaks => {
                    match exp.allows_unimplemented(&a.name, id) {
                        Some(reason) => r.allowed_because = Some(reason.to_string()),
                        None => problems.push(format!(
                            "{}: {id} UNIMPLEMENTED although {}: {}",
                            a.name,
                            if require_compression {
                                "--require-compression is set".to_string()
                            } else {
                                format!(
                                    "the agent {} permessage-deflate in other cases",
                                    if is_client { "offers" } else { "accepts" }
                                )
                            },
                            r.result
                        )),
                    }
                }
                Behavior::NonStrict => match exp.allows(&a.name, id) {
                    Some(reason) => r.allowed_because = Some(reason.to_string()),
                    None => problems.push(format!(
                        "{}: {id} NON-STRICT and not listed in the expectations file: {} / close {}: {}",
                        a.name, r.result, r.behavior_close.label(), r.result_close
                    )),
                },
                _ => {}
            }
        }
    }
    problems
}

const COLS: [Behavior; 5] = [
    Behavior::Ok,
    Behavior::NonStrict,
    Behavior::Informational,
    Behavior::Unimplemented,
    Behavior::Failed,
];

/// Counts of verdicts per category.
pub fn counts(a: &AgentReport) -> BTreeMap<u32, [usize; 5]> {
    let mut m: BTreeMap<u32, [usize; 5]> = BTreeMap::new();
    for (id, r) in &a.cases {
        let cat = id_key(id)[0];
        let i = COLS.iter().position(|b| *b == r.verdict).unwrap_or(4);
        m.entry(cat).or_default()[i] += 1;
    }
    m
}

/// The terminal summary table.
pub fn summary(agents: &[AgentReport]) -> String {
    let mut s = String::new();
    for a in agents {
        let _ = writeln!(s, "\n{} ({}, {})", a.name, a.kind, a.target);
        let _ = writeln!(
            s,
            "  {:<4} {:<45} {:>5} {:>10} {:>6} {:>6} {:>6}",
            "cat", "", "OK", "NON-STRICT", "INFO", "UNIMPL", "FAILED"
        );
        let mut tot = [0usize; 5];
        for (cat, c) in counts(a) {
            for i in 0..5 {
                tot[i] += c[i];
            }
            let _ = writeln!(
                s,
                "  {:<4} {:<45} {:>5} {:>10} {:>6} {:>6} {:>6}",
                cat,
                category_name(cat),
                c[0],
                c[1],
                c[2],
                c[3],
                c[4]
            );
        }
        let _ = writeln!(
            s,
            "  {:<4} {:<45} {:>5} {:>10} {:>6} {:>6} {:>6}",
            "all", "", tot[0], tot[1], tot[2], tot[3], tot[4]
        );
    }
    s
}

/// Builds the report.
pub fn build(agents: Vec<AgentReport>, filter: &str) -> Report {
    let mut categories = BTreeMap::new();
    for c in [1, 2, 3, 4, 5, 6, 7, 9, 10, 12, 13] {
        categories.insert(c, category_name(c));
    }
    Report {
        suite: format!("duplex xtask conformance {}", env!("CARGO_PKG_VERSION")),
        generated_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        filter: filter.to_string(),
        categories,
        agents,
    }
}

/// Writes `report.json` and `index.html` into `dir`.
pub fn write(dir: &Path, report: &Report) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("report.json"), &json)
        .map_err(|e| format!("writing report.json: {e}"))?;
    std::fs::write(dir.join("index.html"), html(&json))
        .map_err(|e| format!("writing index.html: {e}"))?;
    Ok(())
}

/// The self-contained HTML page (data embedded, rendered by inline JS).
pub fn html(report_json: &str) -> String {
    // Keep the embedded JSON from closing the script element.
    let data = report_json.replace("</", "<\\/").replace("<!--", "<\\!--");
    HTML_TEMPLATE.replace("/*DATA*/", &data)
}

const HTML_TEMPLATE: &str = r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>duplex conformance report</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em} h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
th{background:#f3f3f3;position:sticky;top:0}
td.cell{cursor:pointer;text-align:center;min-width:8em}
.OK{background:#6c6}.NON-STRICT{background:#fc3}.INFORMATIONAL{background:#9bf}
.UNIMPLEMENTED{background:#ccc}.FAILED{background:#e55;color:#fff}
.sub{color:#555;font-size:11px}
tr.cat td{background:#eee;font-weight:bold}
#detail{position:fixed;top:0;right:0;width:46%;height:100%;overflow:auto;background:#fff;border-left:2px solid #888;padding:1em;box-shadow:-4px 0 8px #0003;display:none}
#detail pre{background:#f6f6f6;padding:.5em;white-space:pre-wrap;font-size:12px}
#detail .close{float:right;cursor:pointer;font-size:1.3em}
.legend span{padding:2px 8px;margin-right:4px}
</style></head><body>
<h1>duplex conformance report</h1>
<p id="meta"></p>
<p class="legend"><span class="OK">OK</span><span class="NON-STRICT">NON-STRICT</span><span class="INFORMATIONAL">INFORMATIONAL</span><span class="UNIMPLEMENTED">UNIMPLEMENTED</span><span class="FAILED">FAILED</span> Cell: verdict, then case behaviour / close behaviour and duration. Click a cell for details.</p>
<h2>Summary</h2><div id="summary"></div>
<h2>Cases</h2><div id="matrix"></div>
<div id="detail"><span class="close" onclick="hide()">&#x2715;</span><div id="dbody"></div></div>
<script type="application/json" id="data">/*DATA*/</script>
<script>
const R=JSON.parse(document.getElementById('data').textContent);
const COLS=['OK','NON-STRICT','INFORMATIONAL','UNIMPLEMENTED','FAILED'];
function esc(s){return String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));}
function key(id){return id.split('.').map(Number);}
function cmp(a,b){const x=key(a),y=key(b);for(let i=0;i<Math.max(x.length,y.length);i++){const d=(x[i]??-1)-(y[i]??-1);if(d)return d;}return 0;}
document.getElementById('meta').textContent=R.suite+' \u2014 generated '+new Date(R.generated_unix*1000).toISOString()+(R.filter?' \u2014 cases: '+R.filter:'');
let ids=new Set();R.agents.forEach(a=>Object.keys(a.cases).forEach(k=>ids.add(k)));
ids=[...ids].sort(cmp);
let s='<table><tr><th>agent</th><th>category</th>'+COLS.map(c=>'<th>'+c+'</th>').join('')+'</tr>';
R.agents.forEach(a=>{const m={};Object.entries(a.cases).forEach(([id,r])=>{const c=id.split('.')[0];m[c]=m[c]||{};m[c][r.verdict]=(m[c][r.verdict]||0)+1;});
Object.keys(m).sort((x,y)=>x-y).forEach(c=>{s+='<tr><td>'+esc(a.name)+' <span class="sub">'+a.kind+'</span></td><td>'+c+' '+esc(R.categories[c]||'')+'</td>'+COLS.map(k=>'<td class="'+(m[c][k]?k:'')+'">'+(m[c][k]||'')+'</td>').join('')+'</tr>';});});
document.getElementById('summary').innerHTML=s+'</table>';
let h='<table><tr><th>case</th>'+R.agents.map(a=>'<th>'+esc(a.name)+'<br><span class="sub">'+a.kind+'</span></th>').join('')+'</tr>';
let lastCat=null;
ids.forEach(id=>{const cat=id.split('.')[0];if(cat!==lastCat){lastCat=cat;h+='<tr class="cat"><td colspan="'+(R.agents.length+1)+'">'+cat+' '+esc(R.categories[cat]||'')+'</td></tr>';}
h+='<tr><td>'+id+'</td>';R.agents.forEach((a,ai)=>{const r=a.cases[id];if(!r){h+='<td></td>';return;}
h+='<td class="cell '+r.verdict+'" onclick="show('+ai+',\''+id+'\')">'+r.verdict+(r.allowed_because?'*':'')+'<br><span class="sub">'+r.behavior+' / '+r.behavior_close+' \u00b7 '+Math.round(r.duration_ms)+' ms</span></td>';});h+='</tr>';});
document.getElementById('matrix').innerHTML=h+'</table>';
function list(xs){return xs&&xs.length?'<ul>'+xs.map(x=>'<li>'+esc(x)+'</li>').join('')+'</ul>':'<p><i>(none)</i></p>';}
function show(ai,id){const a=R.agents[ai],r=a.cases[id];let d='<h2>Case '+esc(id)+' \u2014 '+esc(a.name)+'</h2>';
d+='<p><b>Description:</b> '+esc(r.description)+'</p><p><b>Expectation:</b> '+esc(r.expectation)+'</p>';
d+='<p><b>Verdict:</b> <span class="'+r.verdict+'">'+r.verdict+'</span>'+(r.allowed_because?' (allowed: '+esc(r.allowed_because)+')':'')+'</p>';
d+='<p><b>Behaviour:</b> '+r.behavior+' \u2014 '+esc(r.result)+'</p><p><b>Close behaviour:</b> '+r.behavior_close+' \u2014 '+esc(r.result_close)+'</p>';
d+='<p><b>Duration:</b> '+r.duration_ms+' ms'+(r.concurrent?' (ran concurrently with other cases)':' (ran alone)')+'</p>';
if(r.timing)d+='<p><b>Timing:</b> '+esc(JSON.stringify(r.timing))+'</p>';
if(r.offered_extensions||r.negotiated_extensions)d+='<p><b>Extensions offered:</b> '+esc(r.offered_extensions||'(none)')+'<br><b>Extensions answered:</b> '+esc(r.negotiated_extensions||'(none)')+'</p>';
d+='<h3>Expected events</h3>';Object.entries(r.expected).forEach(([b,e])=>{d+='<p>'+b+':</p>'+list(e);});
d+='<h3>Observed events</h3>'+list(r.received);
d+='<h3>Close</h3><table><tr><th></th><th>expected</th><th>observed</th></tr>';
const ec=r.expected_close||{},c=r.close;
d+='<tr><td>closed by</td><td>'+(ec.closed_by_me===undefined?'':ec.closed_by_me?'suite':'peer')+'</td><td>'+(c.opened?(c.closed_by_me?'suite':'peer'):'never opened')+'</td></tr>';
d+='<tr><td>clean</td><td>'+(ec.require_clean?'required':'not required')+'</td><td>'+c.was_clean+'</td></tr>';
d+='<tr><td>peer close code</td><td>'+esc((ec.codes||[]).join(', '))+' or none</td><td>'+(c.remote_code??'none')+(c.remote_reason?' "'+esc(c.remote_reason)+'"':'')+'</td></tr>';
d+='<tr><td>suite close code</td><td></td><td>'+(c.local_code??'none')+'</td></tr>';
d+='<tr><td>TCP closed by</td><td></td><td>'+c.tcp_closed_by+(c.dropped_by_me?' (suite dropped it)':'')+'</td></tr>';
d+='<tr><td>close took</td><td></td><td>'+(c.close_ms==null?'':c.close_ms.toFixed(1)+' ms')+'</td></tr></table>';
d+='<h3>Wire log</h3><pre>'+esc((r.wirelog||[]).join('\n'))+'</pre>';
document.getElementById('dbody').innerHTML=d;document.getElementById('detail').style.display='block';}
function hide(){document.getElementById('detail').style.display='none';}
document.addEventListener('keydown',e=>{if(e.key==='Escape')hide();});
</script></body></html>
"##;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::cases;
    use crate::conformance::runner::CaseResult;

    fn agent(verdicts: &[(&str, Behavior)]) -> AgentReport {
        let all = cases::all();
        let mut m = BTreeMap::new();
        for (id, v) in verdicts {
            let c = all.iter().find(|c| c.id == *id).unwrap();
            let mut r = CaseResult::not_opened(c, "test", std::time::Instant::now(), false);
            r.verdict = *v;
            m.insert(id.to_string(), r);
        }
        AgentReport {
            name: "a".into(),
            kind: "server",
            target: "t".into(),
            cases: m,
        }
    }

    #[test]
    fn gate_rules() {
        let exp = Expectations::default();
        let mut ok = vec![agent(&[
            ("1.1.1", Behavior::Ok),
            ("7.13.1", Behavior::Informational),
            ("12.1.1", Behavior::Unimplemented),
        ])];
        assert!(gate(&mut ok, &exp, false).is_empty());
        assert_eq!(gate(&mut ok, &exp, true).len(), 1, "--require-compression");
        let mut bad = vec![agent(&[("1.1.1", Behavior::Failed)])];
        assert_eq!(gate(&mut bad, &exp, false).len(), 1);
        let mut unimpl = vec![agent(&[("2.1", Behavior::Unimplemented)])];
        assert_eq!(gate(&mut unimpl, &exp, false).len(), 1);
        let mut ns = vec![agent(&[("6.4.3", Behavior::NonStrict)])];
        assert_eq!(gate(&mut ns, &exp, false).len(), 1);
        let exp = Expectations::parse(
            r#"{"non_strict_allowed":[{"case":"6.4.3","reason":"validates per frame"}]}"#,
        )
        .unwrap();
        let mut ns = vec![agent(&[
            ("6.4.3", Behavior::NonStrict),
            ("6.4.4", Behavior::NonStrict),
        ])];
        let p = gate(&mut ns, &exp, false);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("6.4.4"));
        assert_eq!(
            ns[0].cases["6.4.3"].allowed_because.as_deref(),
            Some("validates per frame")
        );
    }

    #[test]
    fn unimplemented_compression_fails_for_agents_that_speak_deflate() {
        let exp = Expectations::default();
        let mut srv = vec![agent(&[
            ("12.1.1", Behavior::Ok),
            ("13.3.1", Behavior::Unimplemented),
        ])];
        srv[0]
            .cases
            .get_mut("12.1.1")
            .unwrap()
            .negotiated_extensions = Some("permessage-deflate; client_max_window_bits=15".into());
        let p = gate(&mut srv, &exp, false);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("13.3.1") && p[0].contains("accepts"));
        // A client is judged by what it offers, even in other categories.
        let mut cli = vec![agent(&[
            ("1.1.1", Behavior::Ok),
            ("13.3.1", Behavior::Unimplemented),
        ])];
        cli[0].kind = "client";
        cli[0].cases.get_mut("1.1.1").unwrap().offered_extensions =
            Some("permessage-deflate; client_max_window_bits".into());
        assert_eq!(gate(&mut cli, &exp, false).len(), 1);
        // The expectations file can allow it.
        let exp = Expectations::parse(
            r#"{"unimplemented_allowed":[{"case":"13.3.*","agent":"a","reason":"no 8-bit windows"}]}"#,
        )
        .unwrap();
        assert!(gate(&mut cli, &exp, false).is_empty());
        assert!(gate(&mut srv, &exp, true).is_empty());
        assert_eq!(
            srv[0].cases["13.3.1"].allowed_because.as_deref(),
            Some("no 8-bit windows")
        );
    }

    #[test]
    fn expectations_need_reasons() {
        assert!(
            Expectations::parse(r#"{"non_strict_allowed":[{"case":"6.4.3","reason":" "}]}"#)
                .is_err()
        );
        assert!(
            Expectations::parse("{}")
                .unwrap()
                .non_strict_allowed
                .is_empty()
        );
        assert!(Expectations::parse("not json").is_err());
    }

    #[test]
    fn shipped_expectations_file_is_valid() {
        let text = include_str!("../../conformance-expectations.json");
        Expectations::parse(text).unwrap();
    }

    #[test]
    fn html_embeds_data_safely() {
        let a = agent(&[("1.1.1", Behavior::Ok), ("2.1", Behavior::Failed)]);
        let mut r = build(vec![a], "");
        r.agents[0].cases.get_mut("1.1.1").unwrap().result = "</script><b>x".into();
        let json = serde_json::to_string(&r).unwrap();
        let page = html(&json);
        assert!(!page.contains("</script><b>"));
        assert!(page.contains("\"1.1.1\""));
        assert!(!page.contains("/*DATA*/"));
        assert_eq!(page.matches("</script>").count(), 2);
        let s = summary(&r.agents);
        assert!(s.contains("Framing") && s.contains("Pings/Pongs"));
    }
}

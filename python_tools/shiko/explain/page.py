"""The report as one self-contained HTML page (`<name>.report.html`).

Everything is inline (CSS, JavaScript, data): the page makes no network request and works from
a file:// URL. The data is the report without per-layer entry lists, plus the image's final
file tree ([path, layer, size, flags] rows, flags: 1 = the path is in more than one layer, i.e.
counts in dive's wasted bytes). The script renders, with textContent only (no HTML from data):
a summary, a bar per layer split by origin (`.layer-bar` > `.seg`), the findings with their
"what to do", an expandable file tree (`.tree-node`, directories first, by size) coloured by
the layer each file comes from, the largest files and the duplicates.
"""

import html
import json

from python_tools.shiko.explain.filesystem import final_files

TOP_ORIGINS = 12
SHOWN_DUPLICATES = 100

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:16px 24px}
header h1{font-size:18px;margin:0 0 4px}
header .digest{font-family:ui-monospace,Menlo,monospace;font-size:12px;opacity:.8}
main{padding:16px 24px;max-width:1200px}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;margin:0 0 16px;padding:12px 16px}
h2{font-size:15px;margin:0 0 8px}
.stats{display:flex;flex-wrap:wrap;gap:24px}
.stat b{display:block;font-size:20px}
.stat.bad b{color:#b3261e}
.layer{display:grid;grid-template-columns:28px 220px 1fr 90px;gap:8px;align-items:center;margin:4px 0}
.layer .name{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.layer .size{text-align:right;font-variant-numeric:tabular-nums}
.layer-bar{display:flex;height:18px;min-width:2px;border-radius:3px;overflow:hidden}
.seg{height:100%;min-width:1px}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:middle}
.origins{font-size:12px;color:#4a5263;margin:0 0 6px 36px}
.finding{border-left:4px solid #e0a100;padding:4px 10px;margin:6px 0;background:#fffaf0}
.finding .what{color:#1b5e20}
.finding .what:before{content:"what to do: ";font-weight:600}
.finding .paths{font-family:ui-monospace,Menlo,monospace;font-size:11px;color:#596273}
table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:2px 8px;border-bottom:1px solid #eef0f4;font-size:13px}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.path{font-family:ui-monospace,Menlo,monospace;font-size:12px;word-break:break-all}
.tree-node{display:grid;grid-template-columns:1fr 90px 160px;gap:8px;align-items:center;padding:1px 0;cursor:default}
.tree-node .label{font-family:ui-monospace,Menlo,monospace;font-size:12px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.tree-node.dir .label{cursor:pointer}
.tree-node.dir .label:before{content:"\\25B8 ";color:#596273}
.tree-node.dir.open .label:before{content:"\\25BE "}
.tree-node .tsize{text-align:right;font-size:12px;font-variant-numeric:tabular-nums}
.tree-node .tbar{height:10px;border-radius:2px;min-width:1px}
.tree-node.wasted .label{background:#fde7e7;color:#b3261e}
.tree-node.wasted .label:after{content:"  wasted: in more than one layer";font-size:11px}
.legend span{margin-right:12px;font-size:12px;white-space:nowrap}
"""

_JS = r"""
(function(){
"use strict";
var R=JSON.parse(document.getElementById("report-data").textContent);
var PALETTE=["#4e79a7","#f28e2b","#59a14f","#e15759","#76b7b2","#edc948","#b07aa1","#ff9da7","#9c755f","#bab0ac","#1f77b4","#2ca02c"];
function color(i){return PALETTE[i%PALETTE.length];}
function shade(hex,k){var n=parseInt(hex.slice(1),16),r=n>>16,g=(n>>8)&255,b=n&255;
  var f=function(c){return Math.round(c+(255-c)*k);};return "rgb("+f(r)+","+f(g)+","+f(b)+")";}
function human(n){if(n<1000)return n+" B";var u=["kB","MB","GB","TB"];for(var i=0;i<u.length;i++){n/=1000;if(n<999.95||i==u.length-1)return n.toFixed(1)+" "+u[i];}}
function el(tag,cls,text){var e=document.createElement(tag);if(cls)e.className=cls;if(text!==undefined)e.textContent=text;return e;}
function add(p,c){p.appendChild(c);return c;}
var root=document.getElementById("app");

// Summary
var s=add(root,el("section"));add(s,el("h2","","Image"));
var stats=add(s,el("div","stats"));
function stat(label,value,bad){var d=add(stats,el("div","stat"+(bad?" bad":"")));add(d,el("b","",value));add(d,el("span","",label));}
stat("compressed",human(R.size));
if(R.tar_size!==null)stat("uncompressed",human(R.tar_size));
stat("files",String(R.files));
stat("layers",String(R.layers.length));
stat("efficiency (dive)",(100*R.efficiency).toFixed(2)+" %",R.efficiency<0.95);
stat("wasted bytes (dive)",human(R.wasted_bytes),R.wasted_bytes>0);

// Layers, each bar split by origin
var ls=add(root,el("section"));ls.id="layers";add(ls,el("h2","","Layers (bottom first): bytes by origin"));
var maxBytes=1;R.layers.forEach(function(l){if(l.bytes>maxBytes)maxBytes=l.bytes;});
R.layers.forEach(function(l){
  var row=add(ls,el("div","layer"));row.id="layer-"+l.index;
  var sw=add(row,el("span","swatch"));sw.style.background=color(l.index);
  var nm=add(row,el("span","name",l.index+" "+l.name));nm.title=(l.label||l.source||"")+"\n"+l.digest;
  var track=add(row,el("div"));
  var bar=add(track,el("div","layer-bar"));bar.style.width=Math.max(0.3,100*l.bytes/maxBytes)+"%";
  l.origins.forEach(function(o,k){var seg=add(bar,el("div","seg"));
    seg.style.flexGrow=String(Math.max(o.bytes,1));seg.style.background=shade(color(l.index),(k%4)*0.2);
    seg.title=o.origin+(o.package?" ("+o.package+")":"")+": "+human(o.bytes)+" in "+o.files+" file(s)";});
  add(row,el("span","size",human(l.bytes)));
  var top=l.origins.slice(0,3).map(function(o){return o.origin+(o.package?" ("+o.package+")":"")+" "+human(o.bytes);}).join(" · ");
  add(ls,el("div","origins",l.files+" files, "+human(l.size)+" compressed"+(top?" — "+top:"")));
});

// Findings
var fs=add(root,el("section"));fs.id="findings";add(fs,el("h2","","Findings ("+R.findings.length+")"));
if(!R.findings.length)add(fs,el("p","","Nothing to report."));
R.findings.forEach(function(f){var d=add(fs,el("div","finding"));
  add(d,el("div","title",f.title));add(d,el("div","what",f.what_to_do));
  if(f.paths.length)add(d,el("div","paths",f.paths.join("  ")));});

// File tree of the final filesystem, coloured by layer
var ts=add(root,el("section"));ts.id="tree";add(ts,el("h2","","Files (final filesystem), coloured by layer"));
var legend=add(ts,el("div","legend"));
R.layers.forEach(function(l){var sp=add(legend,el("span"));var sw=add(sp,el("span","swatch"));sw.style.background=color(l.index);add(sp,document.createTextNode(" "+l.index+" "+l.name));});
var top={children:{},size:0,wasted:false,layers:{}};
R.tree.forEach(function(f){var parts=f[0].split("/").filter(Boolean),n=top;
  for(var i=0;i<parts.length;i++){n.size+=f[2];n.layers[f[1]]=(n.layers[f[1]]||0)+f[2];if(f[3])n.wasted=true;
    var c=n.children[parts[i]];if(!c){c=n.children[parts[i]]={children:null,size:0,wasted:false,layers:{}};}
    if(i<parts.length-1&&!c.children)c.children={};n=c;}
  n.size+=f[2];n.layers[f[1]]=(n.layers[f[1]]||0)+f[2];n.layer=f[1];if(f[3])n.wasted=true;});
function mainLayer(n){var best=0,bl=0;for(var k in n.layers){if(n.layers[k]>=best){best=n.layers[k];bl=+k;}}return bl;}
function render(container,node,depth){
  var names=Object.keys(node.children).sort(function(a,b){var x=node.children[a],y=node.children[b];
    var dx=x.children?0:1,dy=y.children?0:1;return dx-dy||y.size-x.size||(a<b?-1:a>b?1:0);});
  names.forEach(function(name){var c=node.children[name];
    var row=add(container,el("div","tree-node"+(c.children?" dir":"")+(c.wasted?" wasted":"")));
    var lab=add(row,el("span","label",name+(c.children?"/":"")));lab.style.paddingLeft=(depth*16)+"px";
    add(row,el("span","tsize",human(c.size)));
    var b=add(row,el("div","tbar"));var li=c.children?mainLayer(c):c.layer;
    b.style.background=color(li);b.style.width=Math.max(1,Math.round(160*c.size/Math.max(1,top.size)))+"px";
    b.title="layer "+li+" "+R.layers[li].name;
    if(c.children){var kids=null;lab.addEventListener("click",function(){
      if(kids){kids.style.display=kids.style.display==="none"?"":"none";}
      else{kids=el("div","kids");row.parentNode.insertBefore(kids,row.nextSibling);render(kids,c,depth+1);}
      row.classList.toggle("open");});}
  });}
var tree=add(ts,el("div","tree-root"));render(tree,top,0);
function table(parent,heads,rows){var t=add(parent,el("table"));var h=add(t,el("tr"));
  heads.forEach(function(x){add(h,el("th",x[1]||"",x[0]));});
  rows.forEach(function(r){var tr=add(t,el("tr"));r.forEach(function(c,i){add(tr,el("td",heads[i][1]||"",String(c)));});});}

var lg=add(root,el("section"));lg.id="largest";add(lg,el("h2","","Largest files"));
table(lg,[["size","num"],["layer"],["path","path"],["origin"]],R.largest.map(function(r){return [human(r.bytes),r.layer+" "+R.layers[r.layer].name,r.path,r.origin];}));

var du=add(root,el("section"));du.id="duplicates";
add(du,el("h2","","Paths in more than one layer ("+R.duplicates_total+"), wasted "+human(R.wasted_bytes)));
table(du,[["bytes","num"],["layers"],["path","path"]],R.duplicates.map(function(d){return [human(d.bytes),d.layers.join(", "),d.path];}));

document.body.setAttribute("data-rendered","1");
})();
"""


def page_data(report):
    """The page's embedded data (see the module docstring)."""
    wasted = set(d["path"] for d in report["duplicates"])
    rows = []
    for path, (layer, e) in sorted(final_files(report).items()):
        if e["type"] == "dir":
            continue
        rows.append([path, layer, int(e.get("size") or 0), 1 if path in wasted else 0])
    layers = []
    for layer in report["layers"]:
        short = {k: v for k, v in layer.items() if k != "entries"}
        origins = layer["origins"][:TOP_ORIGINS]
        rest = layer["origins"][TOP_ORIGINS:]
        if rest:
            origins = origins + [{"origin": "%d other origins" % len(rest),
                                  "files": sum(o["files"] for o in rest),
                                  "bytes": sum(o["bytes"] for o in rest)}]
        short["origins"] = origins
        layers.append(short)
    data = {k: v for k, v in report.items() if k not in ("layers", "duplicates")}
    data["layers"] = layers
    data["duplicates"] = report["duplicates"][:SHOWN_DUPLICATES]
    data["duplicates_total"] = len(report["duplicates"])
    data["tree"] = rows
    return data


def _script_json(obj):
    """JSON safe inside a <script> element (no '<', '>' or '&' as such)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render_page(report):
    """The HTML page of a report, as bytes (UTF-8, deterministic)."""
    title = "%s — image report" % report["target"]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            "<title>%s</title><style>%s</style></head><body>"
            "<header><h1>%s</h1><div class=\"digest\">%s</div></header>"
            "<main id=\"app\"><noscript>This report needs JavaScript (it makes no network "
            "request).</noscript></main>"
            "<script type=\"application/json\" id=\"report-data\">%s</script>"
            "<script>%s</script></body></html>\n" % (
                html.escape(title), _CSS, html.escape(report["target"]),
                html.escape(report["digest"]), _script_json(page_data(report)), _JS)).encode("utf-8")

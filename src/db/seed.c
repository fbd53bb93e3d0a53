/* seed.c: the deterministic demo data set.
 *
 * Market procedures are the product of base procedures (grouped in dental
 * and aesthetic categories) × markets (countries in five regions) × price
 * tiers: 100 × 31 × 4 = 12,400 rows, ids 1..N in that order. Figures come
 * from a per-procedure base price and US volume, per-market price and
 * volume factors, per-category growth and a splitmix64 stream seeded by the
 * row index, so every database gets the same rows (the benchmark and the
 * tests rely on it). Orders of magnitude are plausible, not sourced. */
#include "db/internal.h"

#include <math.h>

typedef struct { const char *name; double price; double us_volume; } proc_t;
typedef struct { const char *name; double growth; const proc_t *procs; size_t nprocs; } cat_t;
typedef struct { const char *name; const char *region; double price_f; double volume_f; double growth_adj; } market_t;
typedef struct { const char *name; double price_f; double share; } tier_t;

#define P(n, p, v) { n, p, v }

static const proc_t implants[] = {
  P("Single-tooth titanium implant", 4200, 1900000), P("Zirconia implant", 4800, 160000),
  P("All-on-4 full-arch restoration", 24000, 120000), P("All-on-6 full-arch restoration", 30000, 45000),
  P("Mini implant denture stabilization", 3200, 140000), P("Immediate-load implant", 5200, 260000),
  P("Sinus lift with bone graft", 2800, 210000), P("Guided implant surgery", 5600, 300000),
};
static const proc_t aligners[] = {
  P("Comprehensive clear aligner therapy", 5500, 1400000), P("Limited clear aligner therapy", 2900, 650000),
  P("Teen clear aligners", 5800, 420000), P("Aligner refinement", 900, 380000),
  P("Direct-to-consumer aligners", 1950, 300000), P("Clear retainer program", 450, 1100000),
};
static const proc_t veneers[] = {
  P("Porcelain veneers", 1900, 900000), P("Composite veneers", 900, 700000), P("No-prep veneers", 1700, 210000),
  P("Lithium disilicate pressed veneers", 2100, 330000), P("Minimal-prep veneers", 1800, 260000),
};
static const proc_t crowns[] = {
  P("Zirconia crown", 1350, 6500000), P("Lithium disilicate crown", 1450, 3100000),
  P("Porcelain-fused-to-metal crown", 1150, 4200000), P("Same-day CAD/CAM crown", 1500, 1800000),
  P("Three-unit bridge", 3600, 900000), P("Maryland bridge", 1600, 160000), P("Implant-supported bridge", 9800, 180000),
};
static const proc_t endo[] = {
  P("Anterior root canal", 950, 4100000), P("Molar root canal", 1400, 6800000), P("Endodontic retreatment", 1550, 900000),
  P("Apicoectomy", 1300, 260000), P("Pulpotomy", 320, 1500000), P("Regenerative endodontics", 1250, 40000),
};
static const proc_t ortho[] = {
  P("Traditional metal braces", 5200, 2100000), P("Ceramic braces", 6000, 650000), P("Lingual braces", 8900, 90000),
  P("Phase I interceptive orthodontics", 3300, 520000), P("Palatal expansion", 2100, 480000),
  P("Accelerated orthodontics", 1300, 120000),
};
static const proc_t perio[] = {
  P("Scaling and root planing", 1000, 9800000), P("Laser periodontal therapy", 3200, 260000), P("Gum grafting", 1300, 720000),
  P("Crown lengthening", 1150, 640000), P("Pocket reduction surgery", 2500, 310000), P("Periodontal maintenance", 220, 26000000),
};
static const proc_t whitening[] = {
  P("In-office whitening", 650, 3100000), P("Take-home whitening trays", 380, 4300000), P("Laser-activated whitening", 800, 620000),
  P("Internal bleaching", 420, 190000), P("Professional whitening strips", 90, 5200000),
};
static const proc_t toxin[] = {
  P("Botulinum toxin: glabellar lines", 420, 4700000), P("Botulinum toxin: crow's feet", 390, 3000000),
  P("Botulinum toxin: forehead lines", 380, 3300000), P("Botulinum toxin: masseter reduction", 750, 420000),
  P("Botulinum toxin: hyperhidrosis", 1050, 260000), P("Botulinum toxin: lip flip", 190, 650000),
  P("Botulinum toxin: brow lift", 320, 500000), P("Botulinum toxin: platysmal bands", 560, 180000),
};
static const proc_t fillers[] = {
  P("Hyaluronic acid lip augmentation", 720, 1600000), P("Cheek augmentation", 980, 900000), P("Nasolabial fold correction", 760, 1100000),
  P("Tear trough correction", 950, 480000), P("Jawline contouring", 1600, 360000), P("Non-surgical rhinoplasty", 1100, 260000),
  P("Chin augmentation", 900, 300000), P("Calcium hydroxylapatite filler", 850, 420000), P("Poly-L-lactic acid biostimulator", 950, 380000),
};
static const proc_t laser[] = {
  P("Fractional CO2 resurfacing", 2600, 520000), P("Erbium YAG resurfacing", 2100, 230000),
  P("Non-ablative fractional laser", 1100, 680000), P("Intense pulsed light photofacial", 450, 1300000),
  P("Picosecond laser rejuvenation", 900, 310000), P("Laser tattoo removal", 420, 760000),
};
static const proc_t body[] = {
  P("Cryolipolysis", 1450, 900000), P("Radiofrequency body contouring", 1300, 420000), P("HIFU body contouring", 1500, 150000),
  P("Electromagnetic muscle stimulation", 750, 600000), P("Injectable deoxycholic acid", 1300, 150000), P("Laser lipolysis", 2900, 130000),
};
static const proc_t peels[] = {
  P("Superficial glycolic peel", 150, 1500000), P("Medium-depth TCA peel", 650, 320000), P("Deep phenol peel", 3200, 30000),
  P("Salicylic acid peel", 140, 900000), P("Blended medical-grade peel", 380, 420000), P("Jessner peel", 220, 260000),
};
static const proc_t micro[] = {
  P("Collagen induction microneedling", 320, 1900000), P("Radiofrequency microneedling", 1100, 700000),
  P("Microneedling with platelet-rich plasma", 750, 520000), P("Microneedling with exosomes", 850, 120000),
};
static const proc_t hair[] = {
  P("Follicular unit extraction transplant", 8200, 160000), P("Follicular unit transplantation (strip)", 6900, 60000),
  P("Platelet-rich plasma scalp therapy", 800, 420000), P("Low-level laser hair therapy", 1400, 150000),
  P("Robotic hair transplant", 10500, 25000), P("Scalp micropigmentation", 2800, 80000),
};
static const proc_t tightening[] = {
  P("Micro-focused ultrasound lift", 2600, 420000), P("Monopolar radiofrequency tightening", 2900, 240000),
  P("Synchronous ultrasound parallel beam tightening", 2300, 110000),
};
static const proc_t laserhair[] = {
  P("Diode laser hair removal", 380, 1800000), P("Alexandrite laser hair removal", 420, 900000),
  P("Nd:YAG laser hair removal", 400, 700000),
};

#define CAT(n, g, a) { n, g, a, OSB_ARRAY_LEN(a) }
static const cat_t cats[] = {
  CAT("Dental Implants", 7.2, implants), CAT("Clear Aligners", 14.5, aligners), CAT("Veneers", 6.1, veneers),
  CAT("Crowns & Bridges", 4.8, crowns), CAT("Endodontics", 3.9, endo), CAT("Orthodontics", 5.4, ortho),
  CAT("Periodontics", 4.4, perio), CAT("Teeth Whitening", 5.9, whitening), CAT("Botulinum Toxin", 8.6, toxin),
  CAT("Dermal Fillers", 9.3, fillers), CAT("Laser Resurfacing", 7.7, laser), CAT("Body Contouring", 10.8, body),
  CAT("Chemical Peels", 4.2, peels), CAT("Microneedling", 9.9, micro), CAT("Hair Restoration", 11.2, hair),
  CAT("Skin Tightening", 8.9, tightening), CAT("Laser Hair Removal", 6.6, laserhair),
};

static const market_t markets[] = {
  { "United States", "North America", 1.00, 1.000, 0.0 }, { "Canada", "North America", 0.92, 0.110, 0.2 },
  { "Mexico", "North America", 0.38, 0.160, 2.1 },
  { "United Kingdom", "Europe", 0.88, 0.170, -0.4 }, { "Germany", "Europe", 0.84, 0.230, -0.6 },
  { "France", "Europe", 0.80, 0.180, -0.5 }, { "Italy", "Europe", 0.74, 0.160, -0.7 },
  { "Spain", "Europe", 0.66, 0.130, 0.1 }, { "Netherlands", "Europe", 0.86, 0.050, -0.3 },
  { "Sweden", "Europe", 0.90, 0.030, -0.2 }, { "Switzerland", "Europe", 1.18, 0.025, -0.5 },
  { "Poland", "Europe", 0.42, 0.080, 1.4 }, { "Turkey", "Europe", 0.30, 0.150, 3.2 },
  { "China", "Asia Pacific", 0.45, 0.900, 4.1 }, { "Japan", "Asia Pacific", 0.86, 0.260, -0.9 },
  { "South Korea", "Asia Pacific", 0.62, 0.190, 2.4 }, { "India", "Asia Pacific", 0.18, 0.520, 5.3 },
  { "Australia", "Asia Pacific", 0.96, 0.080, 0.6 }, { "Singapore", "Asia Pacific", 0.92, 0.020, 1.1 },
  { "Thailand", "Asia Pacific", 0.35, 0.090, 3.6 }, { "Indonesia", "Asia Pacific", 0.24, 0.140, 4.4 },
  { "Vietnam", "Asia Pacific", 0.22, 0.070, 4.9 },
  { "Brazil", "Latin America", 0.40, 0.330, 2.6 }, { "Argentina", "Latin America", 0.34, 0.070, 1.2 },
  { "Colombia", "Latin America", 0.31, 0.070, 3.0 }, { "Chile", "Latin America", 0.45, 0.035, 1.9 },
  { "United Arab Emirates", "Middle East & Africa", 0.98, 0.030, 3.8 },
  { "Saudi Arabia", "Middle East & Africa", 0.82, 0.060, 4.2 }, { "Israel", "Middle East & Africa", 0.80, 0.025, 1.0 },
  { "South Africa", "Middle East & Africa", 0.36, 0.050, 1.6 }, { "Egypt", "Middle East & Africa", 0.16, 0.070, 3.4 },
};

static const tier_t tiers[] = {
  { "Premium", 1.55, 0.18 }, { "Standard", 1.00, 0.44 }, { "Value", 0.68, 0.26 }, { "DSO & chains", 0.82, 0.12 },
};

static size_t nprocs_total(void) {
  size_t n = 0;
  for (size_t i = 0; i < OSB_ARRAY_LEN(cats); i++) n += cats[i].nprocs;
  return n;
}

size_t osb__seed_proc_count(void) {
  return nprocs_total() * OSB_ARRAY_LEN(markets) * OSB_ARRAY_LEN(tiers);
}

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static double unit(uint64_t *s) { return (double)(splitmix(s) >> 11) / 9007199254740992.0; }

void osb__seed_proc(size_t i, osb__seed_proc_t *out) {
  size_t np = nprocs_total(), nm = OSB_ARRAY_LEN(markets);
  size_t p = i % np, m = (i / np) % nm, t = i / (np * nm);
  osb_assert(t < OSB_ARRAY_LEN(tiers));
  const cat_t *cat = NULL;
  const proc_t *proc = NULL;
  for (size_t c = 0, k = p; c < OSB_ARRAY_LEN(cats); c++) {
    if (k < cats[c].nprocs) {
      cat = &cats[c];
      proc = &cats[c].procs[k];
      break;
    }
    k -= cats[c].nprocs;
  }
  const market_t *mk = &markets[m];
  const tier_t *tier = &tiers[t];
  uint64_t s = 0x05eed5eedULL ^ ((uint64_t)i * 0x2545f4914f6cdd1dULL);
  double price = proc->price * mk->price_f * tier->price_f * (0.9 + 0.2 * unit(&s));
  price = round(price * 100.0) / 100.0;
  double volume = proc->us_volume * mk->volume_f * tier->share * (0.8 + 0.4 * unit(&s));
  double growth = cat->growth + mk->growth_adj + (unit(&s) * 4.0 - 2.0);
  growth = round(growth * 10.0) / 10.0;
  memset(out, 0, sizeof(*out));
  out->id = (int)i + 1;
  snprintf(out->name, sizeof(out->name), "%s - %s (%s)", proc->name, mk->name, tier->name);
  out->category = cat->name;
  out->subcategory = proc->name;
  out->market_size_usd = (int64_t)llround(price * volume);
  out->growth_pct = growth;
  out->avg_price_usd = price;
  out->region = mk->region;
  snprintf(out->description, sizeof(out->description),
           "%s in %s (%s), %s tier: about %.0f procedures a year at an average of $%.2f, "
           "a market of $%.1fM growing %.1f%% a year.",
           proc->name, mk->name, mk->region, tier->name, volume, price, price * volume / 1e6, growth);
}

/* ---- agents and their knowledge ---- */

const osb__seed_agent_t osb__seed_agents[] = {
  { "a0000000-0000-4000-8000-000000000001", "repconnect", "Implant Specialist",
    "Helps dental reps position implant systems, guided surgery and full-arch solutions.",
    "You are an experienced dental implant sales specialist. Answer the rep's questions about implant systems, "
    "full-arch workflows and guided surgery concisely, with concrete talking points and honest trade-offs.", NULL },
  { "a0000000-0000-4000-8000-000000000002", "repconnect", "Aesthetics Advisor",
    "Product knowledge for botulinum toxins, dermal fillers and energy-based devices.",
    "You are an aesthetics product advisor for medical sales reps. Explain neurotoxins, hyaluronic acid fillers and "
    "energy-based devices accurately, mention safety considerations, and never give individual medical advice.", NULL },
  { "a0000000-0000-4000-8000-000000000003", "repconnect", "Objection Coach",
    "Role-plays practice owners and coaches reps through price and timing objections.",
    "You coach sales reps on handling objections from dental and aesthetic practice owners. Be specific: "
    "acknowledge, clarify, respond with value and a next step.", NULL },
  { "a0000000-0000-4000-8000-000000000004", "canvas", "Market Researcher",
    "Researches procedure markets: size, growth, pricing and regional trends.",
    "You are a market research analyst for dental and aesthetic procedures. Use the market data you are given, "
    "state assumptions, and summarise size, growth and pricing by region.", NULL },
  { "a0000000-0000-4000-8000-000000000005", "canvas", "Practice Profiler",
    "Builds prospect profiles of practices: services offered, equipment, growth signals.",
    "You research dental and aesthetic practices for sales reps. Produce a short profile: services, likely "
    "equipment, patient mix, growth signals and good opening questions.", NULL },
};
const size_t osb__seed_nagents = OSB_ARRAY_LEN(osb__seed_agents);

const osb__seed_knowledge_t osb__seed_knowledge[] = {
  { "b0000000-0000-4000-8000-000000000001", "a0000000-0000-4000-8000-000000000001", "Full-arch implant workflows",
    "All-on-4 places four implants per arch, the two posterior ones tilted up to 45 degrees to avoid the sinus and "
    "the nerve, so most patients avoid bone grafting and leave with a fixed provisional the same day. All-on-6 adds "
    "two implants for more support and a longer final prosthesis. Key selling points: fewer surgeries, immediate "
    "function, and a predictable zirconia final bridge after about four to six months." },
  { "b0000000-0000-4000-8000-000000000002", "a0000000-0000-4000-8000-000000000001", "Guided implant surgery",
    "Guided surgery plans the implant position on a CBCT scan merged with an intraoral scan, then a printed surgical "
    "guide controls angle and depth. Benefits for the practice: shorter chair time, flapless placement, fewer "
    "complications and easier restorative planning. Objection: cost of the guide; answer with reduced remakes and "
    "more same-day cases." },
  { "b0000000-0000-4000-8000-000000000003", "a0000000-0000-4000-8000-000000000001", "Zirconia versus titanium implants",
    "Titanium implants have decades of survival data above 95 percent. Zirconia implants are metal-free and white, "
    "attractive to patients with thin gingiva or metal concerns, but are mostly one-piece designs with less "
    "restorative flexibility. Position zirconia as a premium option, not a replacement." },
  { "b0000000-0000-4000-8000-000000000004", "a0000000-0000-4000-8000-000000000002", "Botulinum toxin basics",
    "Botulinum toxin type A relaxes the muscles that cause dynamic wrinkles: glabellar lines, forehead lines and "
    "crow's feet. Onset is two to five days, peak effect around two weeks, duration three to four months. Other "
    "uses include masseter reduction, hyperhidrosis and the lip flip. Units are not interchangeable between brands." },
  { "b0000000-0000-4000-8000-000000000005", "a0000000-0000-4000-8000-000000000002", "Hyaluronic acid fillers",
    "Hyaluronic acid fillers restore volume and contour in lips, cheeks, chin, jawline and tear troughs. Cross-linking "
    "and particle size decide lift and longevity, from six months in the lips to eighteen months or more in the "
    "cheeks. They are reversible with hyaluronidase, which is a strong safety message for new injectors." },
  { "b0000000-0000-4000-8000-000000000006", "a0000000-0000-4000-8000-000000000002", "Energy-based skin treatments",
    "Fractional CO2 lasers give the strongest resurfacing results with about a week of downtime. Non-ablative "
    "fractional lasers need several sessions but little downtime. Radiofrequency microneedling tightens and treats "
    "acne scars in all skin types. Micro-focused ultrasound lifts the brow and jawline without downtime." },
  { "b0000000-0000-4000-8000-000000000007", "a0000000-0000-4000-8000-000000000003", "Price objections",
    "When a practice owner says it is too expensive, ask what they compare it with, then translate the price into "
    "cases: how many additional procedures a month pay for the system, and what the chair-time savings are worth. "
    "Offer financing or a phased rollout rather than a discount." },
  { "b0000000-0000-4000-8000-000000000008", "a0000000-0000-4000-8000-000000000003", "Timing objections",
    "\"Not now\" usually hides another concern. Ask what would need to change for the timing to be right, agree a "
    "concrete follow-up date, and leave something useful: a case study from a similar practice or an ROI estimate." },
  { "b0000000-0000-4000-8000-000000000009", "a0000000-0000-4000-8000-000000000004", "Reading the market data",
    "Each procedure row gives the market size in US dollars, the yearly growth in percent, the average price and the "
    "region. Clear aligners, hair restoration and body contouring are the fastest-growing categories; crowns, "
    "root canals and periodontal maintenance are the largest by volume. Asia Pacific and the Middle East grow fastest." },
  { "b0000000-0000-4000-8000-00000000000a", "a0000000-0000-4000-8000-000000000004", "Regional pricing",
    "Prices track purchasing power: Switzerland and the United States are the most expensive markets, India, Egypt "
    "and Vietnam the least. Dental tourism to Turkey, Mexico and Thailand combines low prices with high growth in "
    "implants, veneers and hair transplants." },
  { "b0000000-0000-4000-8000-00000000000b", "a0000000-0000-4000-8000-000000000005", "Signals of a growing practice",
    "Good growth signals: a recent CBCT or intraoral scanner purchase, new associates, extended opening hours, "
    "financing offers on the website, and aesthetic services added to a dental practice. Practices that joined a "
    "DSO buy centrally; identify the procurement contact early." },
  { "b0000000-0000-4000-8000-00000000000c", "a0000000-0000-4000-8000-000000000005", "Opening questions",
    "Ask which procedures the practice refers out today, how long new patients wait for a consultation, and which "
    "treatments patients ask for that the practice does not offer yet. The answers point to the products worth "
    "presenting first." },
  /* Added by the knowledge step (osb_meta 'seeded_knowledge', migrate.c), so
   * databases seeded before these entries existed get them too. */
  { "b0000000-0000-4000-8000-00000000000d", "a0000000-0000-4000-8000-000000000001", "Implant pricing talk",
    "A single titanium implant with abutment and crown costs patients about 3,000 to 5,000 dollars in the United "
    "States; full-arch All-on-4 cases run 20,000 to 30,000 dollars per arch. Talk about cost per year of function: "
    "an implant that lasts twenty years costs less per year than a bridge that is replaced twice. Practices that "
    "offer third-party financing convert noticeably more full-arch consultations." },
  { "b0000000-0000-4000-8000-00000000000e", "a0000000-0000-4000-8000-000000000001", "Bone grafting and sinus lifts",
    "When the ridge is too thin or the sinus too low, a bone graft or sinus lift comes first and healing takes four "
    "to nine months before the implant. Short and narrow implants, tilted implants and zygomatic implants can avoid "
    "grafting. Reps should know which of their system's implant lengths and diameters cover these cases." },
  { "b0000000-0000-4000-8000-00000000000f", "a0000000-0000-4000-8000-000000000001", "Clear aligners and veneers",
    "Clear aligner therapy moves teeth with a series of trays changed every one to two weeks, typically for six to "
    "eighteen months; an intraoral scanner replaces impressions and shows the patient a simulated result. Porcelain "
    "veneers cover the front of the tooth for colour and shape changes and last ten to fifteen years; composite "
    "veneers cost less but stain and chip sooner. Aligners before veneers often means less tooth reduction." },
  { "b0000000-0000-4000-8000-000000000010", "a0000000-0000-4000-8000-000000000002", "Aesthetic pricing and packages",
    "Neurotoxin is priced per unit (about 10 to 20 dollars) or per area (300 to 600 dollars); a syringe of "
    "hyaluronic acid filler costs patients 600 to 1,000 dollars. Memberships and treatment packages smooth revenue "
    "and bring patients back on schedule every three to four months. Compete on results and safety, not on the "
    "lowest unit price." },
  { "b0000000-0000-4000-8000-000000000011", "a0000000-0000-4000-8000-000000000002", "Filler safety and complications",
    "The serious filler risk is vascular occlusion: blanching, pain and mottled skin right after injection. Injectors "
    "should keep hyaluronidase on hand, know the danger zones (glabella, nose, nasolabial folds), aspirate or use "
    "cannulas where appropriate and follow a written protocol. Bruising and swelling are common and resolve within "
    "days." },
  { "b0000000-0000-4000-8000-000000000012", "a0000000-0000-4000-8000-000000000002", "Body contouring and hair removal",
    "Cryolipolysis freezes fat cells with results over two to three months and no downtime; radiofrequency and HIFU "
    "devices heat tissue to tighten it. Laser hair removal needs six to eight sessions; the diode and Nd:YAG lasers "
    "suit darker skin types better than alexandrite. Device purchases pay back through treatment packages." },
  { "b0000000-0000-4000-8000-000000000013", "a0000000-0000-4000-8000-000000000003", "We already have a supplier",
    "When the practice says they already work with another company, do not criticise the competitor. Ask what they "
    "like about the current supplier and what they would improve, then offer a side-by-side trial on a few cases. "
    "A second supplier for a niche (guided surgery, zirconia, fillers for the lips) is an easier first step than a "
    "full switch." },
  { "b0000000-0000-4000-8000-000000000014", "a0000000-0000-4000-8000-000000000003", "Patients will not pay for it",
    "If the owner doubts that patients will pay, share case acceptance figures from similar practices, suggest "
    "patient financing with monthly payments, and show how before-and-after photos and a simple treatment "
    "presentation raise acceptance. Offer to train the front desk on talking about fees with confidence." },
  { "b0000000-0000-4000-8000-000000000015", "a0000000-0000-4000-8000-000000000003", "Discount requests",
    "When asked for a discount, trade instead of giving: a better price for a larger order, a longer commitment, a "
    "case study or a referral. Protect the list price by adding value such as training, marketing material or "
    "extended warranty. A discount given without a trade teaches the buyer to ask again." },
  { "b0000000-0000-4000-8000-000000000016", "a0000000-0000-4000-8000-000000000004", "Market size and growth by category",
    "In the demo data crowns and bridges, root canals and periodontal maintenance are the largest dental markets by "
    "procedure volume. Clear aligners grow around fourteen percent a year, hair restoration around eleven and body "
    "contouring around ten; neurotoxins and fillers grow eight to nine percent. Mature categories such as "
    "endodontics grow about four percent." },
  { "b0000000-0000-4000-8000-000000000017", "a0000000-0000-4000-8000-000000000004", "Price tiers and DSOs",
    "Each market is split into premium, standard, value and DSO tiers. Premium practices charge about fifty percent "
    "above the standard price; value clinics about a third less. Dental service organisations negotiate centrally "
    "and buy at volume, so their price per procedure sits between value and standard." },
  { "b0000000-0000-4000-8000-000000000018", "a0000000-0000-4000-8000-000000000005", "Profiling an aesthetic practice",
    "For a medical spa or aesthetic clinic look at the injector team (nurses, physicians), the devices listed on the "
    "website, membership offers, and reviews that mention specific treatments. A clinic advertising several laser "
    "brands is a device buyer; one built around injectables is a candidate for fillers and skin boosters." },
  { "b0000000-0000-4000-8000-000000000019", "a0000000-0000-4000-8000-000000000005", "Profiling a dental practice",
    "Check the number of chairs and dentists, whether implants, aligners or sedation are offered in-house, the "
    "imaging equipment (CBCT, intraoral scanner), opening hours, and whether the practice belongs to a DSO. "
    "Specialists (periodontists, oral surgeons, orthodontists) are referral hubs worth mapping." },
};
const size_t osb__seed_nknowledge = OSB_ARRAY_LEN(osb__seed_knowledge);

package stocklakehouse.bi;

import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.SparkSessionExtensions;
import org.apache.spark.sql.catalyst.expressions.CallMethodViaReflection;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.expressions.SubqueryExpression;
import org.apache.spark.sql.catalyst.plans.logical.Command;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.catalyst.plans.logical.ParsedStatement;
import org.apache.spark.sql.execution.command.SetCommand;
import scala.Option;
import scala.Tuple2;
import scala.collection.Iterator;
import scala.runtime.AbstractFunction1;
import scala.runtime.BoxedUnit;

/**
 * A Spark session extension (spark.sql.extensions) that makes every session read-only except the one
 * that owns the server: a check rule run on each analyzed plan, before any command executes, refuses
 * commands (writes, DDL, cache, jars, settings) other than the SHOW / DESCRIBE / EXPLAIN / USE family,
 * and calls of Java methods through SQL (reflect, java_method).
 */
public final class ReadOnlyGuard extends AbstractFunction1 {

  private static volatile SparkSession owner;

  /** The session exempt from the guard (the server's own, which registers the tables). */
  public static void exempt(SparkSession session) {
    owner = session;
  }

  public Object apply(Object extensions) {
    ((SparkSessionExtensions) extensions).injectCheckRule(new AbstractFunction1() {
      public Object apply(Object session) {
        return new PlanCheck((SparkSession) session);
      }
    });
    return BoxedUnit.UNIT;
  }

  /** Why a statement is refused, or null; public for tests. */
  public static String refusal(LogicalPlan plan) {
    if (plan instanceof ParsedStatement) {
      return plan.nodeName();
    }
    if (plan instanceof Command && !readOnlyCommand(plan)) {
      return plan.nodeName();
    }
    Iterator expressions = plan.expressions().iterator();
    while (expressions.hasNext()) {
      String why = refusal((Expression) expressions.next());
      if (why != null) {
        return why;
      }
    }
    Iterator children = plan.children().iterator();
    while (children.hasNext()) {
      String why = refusal((LogicalPlan) children.next());
      if (why != null) {
        return why;
      }
    }
    return null;
  }

  private static String refusal(Expression expression) {
    if (expression instanceof CallMethodViaReflection) {
      return expression.prettyName();
    }
    if (expression instanceof SubqueryExpression) {
      String why = refusal((LogicalPlan) ((SubqueryExpression) expression).plan());
      if (why != null) {
        return why;
      }
    }
    Iterator children = expression.children().iterator();
    while (children.hasNext()) {
      String why = refusal((Expression) children.next());
      if (why != null) {
        return why;
      }
    }
    return null;
  }

  // By name: Spark 3.5 and Delta have v1 and v2 variants of each SHOW / DESCRIBE command (ShowTables,
  // ShowTablesCommand, DescribeDeltaHistory, ...), all of which only read. Anything else is refused,
  // so a command added by a later Spark is refused until it is named here.
  private static boolean readOnlyCommand(LogicalPlan plan) {
    if (plan instanceof SetCommand) {
      Option kv = ((SetCommand) plan).kv();
      return kv.isEmpty() || ((Option) ((Tuple2) kv.get())._2()).isEmpty();
    }
    String name = plan.getClass().getSimpleName();
    return name.startsWith("Show") || name.startsWith("Describe") || name.equals("ExplainCommand")
        || name.equals("SetCatalogAndNamespace") || name.equals("SetNamespaceCommand");
  }

  private static final class PlanCheck extends AbstractFunction1 {
    private final SparkSession session;

    PlanCheck(SparkSession session) {
      this.session = session;
    }

    public Object apply(Object plan) {
      if (session != owner) {
        String why = refusal((LogicalPlan) plan);
        if (why != null) {
          throw new SecurityException(
              "read-only endpoint: " + why + " refused (queries, SHOW, DESCRIBE, EXPLAIN and USE only)");
        }
      }
      return BoxedUnit.UNIT;
    }
  }
}
